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

// A UserError raised inside a SystemC process reaches sc_start's caller as SystemC's own report, its type
// lost: raise_in_process() keeps the message, and take_process_error() hands it back, once, to the code
// that catches the report (the CLI's main, a child process's wrapper), which reports it as the UserError it was.
inline std::string& process_error_slot() {
    static std::string message;
    return message;
}
[[noreturn]] inline void raise_in_process(const std::string& message) {
    process_error_slot() = message;
    throw UserError(message);
}
inline std::string take_process_error() {
    std::string message;
    message.swap(process_error_slot());
    return message;
}

}  // namespace trnsim
