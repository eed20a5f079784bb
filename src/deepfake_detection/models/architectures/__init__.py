"""One module per architecture. Each registers itself (`models.registry.register`), and the
registry imports every module here when it is first asked: adding an architecture is a module
in this folder plus its config, `conf/model/<name>.yaml`."""
