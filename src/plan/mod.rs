//! The planner (filled by the planner work).
