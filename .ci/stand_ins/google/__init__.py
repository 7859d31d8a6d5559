"CI stand-in for the `google` namespace: `google.colab` from here, every other `google.*` package (protobuf, ...) from where it is installed"
__path__ = __import__('pkgutil').extend_path(__path__, __name__)
