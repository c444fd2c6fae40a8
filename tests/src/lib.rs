//! Helpers for the end-to-end tests: processes, namespaces, clean-up.
