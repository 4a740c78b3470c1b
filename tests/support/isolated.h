#pragma once
// Runs a function in a forked child process and returns what it printed to its pipe. SystemC cannot
// re-elaborate within one process, so each simulation a test needs runs in its own child.

#include <functional>
#include <string>

namespace trnsim::testing {

// `body` returns a string (e.g. a JSON result); an exception in the child becomes "error: <what>".
std::string run_isolated(const std::function<std::string()>& body);

}  // namespace trnsim::testing
