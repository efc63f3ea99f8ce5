//! Placeholder: the influxdb backend is being written.
