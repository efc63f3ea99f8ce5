//! Placeholder: the rrd backend is being written.
