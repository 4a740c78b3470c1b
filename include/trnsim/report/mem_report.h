#pragma once
// Renders a `trnsim mem` result: JSON ("schema": "trnsim.mem/1") and a terminal table.

#include <string>

#include <nlohmann/json.hpp>

#include "trnsim/runtime/mem_runner.h"

namespace trnsim::report {

constexpr const char* k_mem_schema = "trnsim.mem/1";

nlohmann::json to_json(const runtime::MemResult& result);
std::string to_table(const runtime::MemResult& result);

}  // namespace trnsim::report
