#pragma once
// Renders a `trnsim collective` run: JSON ("schema": "trnsim.collective/1"; one object, with one point
// per simulated collective) and a terminal table in the style of nccom-test.

#include <string>

#include <nlohmann/json.hpp>

#include "trnsim/runtime/collective_runner.h"

namespace trnsim::report {

constexpr const char* k_collective_schema = "trnsim.collective/1";

nlohmann::json to_json(const runtime::CollectiveRun& run);
std::string to_table(const runtime::CollectiveRun& run);

}  // namespace trnsim::report
