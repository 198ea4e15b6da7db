//! resource (being written).
