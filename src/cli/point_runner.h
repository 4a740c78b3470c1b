#pragma once
// Runs sweep points as worker processes: each point is the trnsim binary itself (/proc/self/exe) with the
// point's arguments and `--json <temporary file>`, so that every point gets a fresh SystemC elaboration
// (docs/adr/0001). SIGINT, SIGTERM and SIGHUP stop the launching, stop the running workers and return.

#include <functional>
#include <string>
#include <vector>

#include "metrics.h"
#include "sweep_spec.h"

namespace trnsim::cli {

struct PointOutcome {
    bool ok = false;
    ordered_json result;  // the point's result without its "sim" object
    ordered_json sim;     // the result's "sim": the simulator's own cost on this host
    std::string error;    // when not ok: the worker's error message
    double wall_s = 0;    // worker start to end, as the sweep saw it
};

struct PointRunnerOptions {
    int jobs = 1;
    std::vector<std::string> extra_args;  // added to every point, e.g. --cache DIR
};

// Runs `points` at most `jobs` at a time and calls `on_done` for each as it finishes (completion order), and
// `on_tick` a few times a second while waiting. Returns 0 when every point ran, or the signal number that
// interrupted the sweep; workers stopped by it are not reported (they run again on --resume).
int run_points(const std::vector<SweepPoint>& points, const PointRunnerOptions& options,
               const std::function<void(const SweepPoint&, PointOutcome)>& on_done,
               const std::function<void()>& on_tick);

}  // namespace trnsim::cli
