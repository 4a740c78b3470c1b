#pragma once
// Renders a `trnsim run` result: JSON ("schema": "trnsim.run/1") and the terminal summary and breakdown.

#include <string>

#include <nlohmann/json.hpp>

#include "trnsim/runtime/training_runner.h"

namespace trnsim::report {

constexpr const char* k_run_schema = "trnsim.run/1";

nlohmann::json to_json(const runtime::TrainingResult& result);
std::string to_table(const runtime::TrainingResult& result);
// Writes the simulated timeline (--trace) to `path` (atomically) as a Chrome/Perfetto trace: per stage a
// core, a communication and a pipeline-wait track, and the utilization counters (per stage engine, link
// and chip's DMA rings). Written as it goes: a 512-chip step has millions of counter points.
void write_chrome_trace(const runtime::TrainingResult& result, const std::string& path);

}  // namespace trnsim::report
