#pragma once
// Renders a `trnsim run` result: JSON ("schema": "trnsim.run/1") and the terminal summary and breakdown.

#include <string>

#include <nlohmann/json.hpp>

#include "trnsim/runtime/training_runner.h"

namespace trnsim::report {

constexpr const char* k_run_schema = "trnsim.run/1";

nlohmann::json to_json(const runtime::TrainingResult& result);
std::string to_table(const runtime::TrainingResult& result);
// The simulated timeline (--trace) as a Chrome/Perfetto trace: per stage a core, a communication and a
// pipeline-wait track.
nlohmann::json to_chrome_trace(const runtime::TrainingResult& result);

}  // namespace trnsim::report
