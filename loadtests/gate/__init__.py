"""The regression gate (`ragload bench-ci`): the change and its base measured in turn on this machine."""
