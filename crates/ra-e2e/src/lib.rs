//! End-to-end tests against a real inference server live in `tests/`; this crate has no
//! code of its own. They need `RA_TEST_GGUF` and `RA_LLAMA_SERVER_BIN`, which
//! `scripts/setup-llama.sh` prints (and `.ci/run` exports).
