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

// Runs the elaborated model until no event is left (sc_start), or until a model stopped it with a user error
// (stop_simulation), which it then throws as a StoppedSimulation (a UserError, core/error.h). Under AddressSanitizer it
// re-announces the main thread's stack first: SystemC's coroutine switches leave ASan with the last coroutine's bounds,
// and an exception thrown afterwards on the main stack would be reported as a stack overflow.
void run_simulation();

// For a user error found while simulating (simulated time past the clock's range, say): keeps the message (the
// first one) and stops the simulation at the end of the current delta cycle, for run_simulation to throw.
// Not an exception thrown inside a process, which SystemC would turn into its own report.
void stop_simulation(const std::string& message);

// Per-component logger ("hw.dma", "cli", ...), writing to stderr, level from TRNSIM_LOG (default warn).
std::shared_ptr<spdlog::logger> logger(const std::string& component);

}  // namespace trnsim
