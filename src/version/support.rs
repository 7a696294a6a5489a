//! Support window (filled by the skew work).
