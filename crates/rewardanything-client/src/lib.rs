//! Render, call and parse RewardAnything, the principle-following generative reward model.
pub mod render;
pub mod shuffle;
