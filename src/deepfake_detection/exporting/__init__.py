"""A trained detector as a file other programs can run: ONNX or a torch.export program."""
