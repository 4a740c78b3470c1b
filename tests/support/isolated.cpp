#include "support/isolated.h"

#include "trnsim/core/process.h"

namespace trnsim::testing {

std::string run_isolated(const std::function<std::string()>& body) {
    return trnsim::run_isolated(body);
}

}  // namespace trnsim::testing
