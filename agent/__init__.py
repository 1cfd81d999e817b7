"""The device agent: verifies, installs and runs models, reports back.

Runs on 1 GB boards with only paho-mqtt, numpy, cryptography and the TFLite
runtime installed; it must never import the server's dependencies.
"""
