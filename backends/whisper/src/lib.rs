//! Placeholder: the whisper backend is being written.
