#pragma once
// Error types. Every user-facing error says what was wrong, where (file, dotted key path or CLI flag)
// and what is allowed. The CLI maps UserError to exit code 2.

#include <stdexcept>
#include <string>

namespace trnsim {

// Bad input from the user: config, CLI or workload.
class UserError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A value with a malformed or missing unit.
class UnitError : public UserError {
public:
    using UserError::UserError;
};

// A user error that stopped a simulation midway (sim_context.h, stop_simulation): SystemC's threads are left
// suspended, holding what they allocated, so the process should end without tearing down (std::_Exit).
class StoppedSimulation : public UserError {
public:
    using UserError::UserError;
};

}  // namespace trnsim
