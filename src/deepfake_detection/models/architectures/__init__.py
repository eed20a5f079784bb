"""One module per architecture. Each registers itself (`models.registry.register`), and
`deepfake_detection.models` imports every module here: adding an architecture is a module in
this folder plus its config, `conf/model/<name>.yaml`."""
