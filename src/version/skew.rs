//! Version-skew policy (filled by the skew work).
