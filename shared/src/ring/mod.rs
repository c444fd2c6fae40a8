//! Shared-memory rings between the control process and the data plane (DESIGN §9).
