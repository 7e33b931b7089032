"""The stages of the CT pipeline, one module each."""
