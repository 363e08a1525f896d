"""Code the Rasa server loads: the call channel (channel.py) and the PIN-masking tracker store (tracker_store.py)."""
