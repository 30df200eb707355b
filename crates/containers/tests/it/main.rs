//! Integration tests of infermux-containers: the backends' specs, the process launcher and the
//! supervisor against real child processes (missing binaries, ports in use, servers never
//! ready, crash loops, restarts, orphans), the Docker launcher against a replay of the Docker
//! Engine API written from its published spec (and a real engine where `DOCKER_HOST` is set),
//! `Unified` in and out of its pool, and the must-show test: a real llama.cpp server SIGKILLed under load behind a pool.

mod docker;
mod helpers;
mod llama;
mod process;
mod specs;
mod unified;
