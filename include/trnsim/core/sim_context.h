#pragma once
// SystemC glue. SystemC keeps one global simulation context per process and cannot re-elaborate after
// sc_start, so trnsim runs exactly one elaboration per process (docs/adr/0001-one-elaboration-per-process.md):
// the CLI simulates one thing per invocation, and tests that need several simulations run each in a
// forked child (tests/support/isolated.h).

#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace trnsim {

// Sets the time resolution (1 fs) and routes SystemC reports into spdlog. Call before creating any
// SystemC object; later calls do nothing.
void init_systemc();

// Runs the elaborated model until no event is left (sc_start). Under AddressSanitizer it then re-announces
// the main thread's stack: SystemC's coroutine switches leave ASan with the last coroutine's bounds, and
// an exception thrown afterwards on the main stack would be reported as a stack overflow.
void run_simulation();

// Per-component logger ("hw.dma", "cli", ...), writing to stderr, level from TRNSIM_LOG (default warn).
std::shared_ptr<spdlog::logger> logger(const std::string& component);

}  // namespace trnsim
