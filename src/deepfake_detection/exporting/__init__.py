"""`deepfake-export`: a trained detector as a file other programs can run, ONNX or a
torch.export program (the formats, their spec and the parity check live in `detector/`)."""
