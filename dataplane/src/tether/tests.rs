//! In-memory tests of whole tethers.
