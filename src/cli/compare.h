#pragma once
// trnsim compare: two results (or two sweep outputs, matched by their axis values), metric by metric, with a
// tolerance; a JUnit XML report for CI systems.

#include <string>
#include <vector>

#include "metrics.h"

namespace trnsim::cli {

// "2%" -> 0.02. UserError naming `flag` unless a non-negative percentage with its '%'.
double parse_tolerance(const std::string& text, const std::string& flag);

struct MetricSpec {
    std::string path;      // dotted, into the result
    double tolerance = 0;  // relative, e.g. 0.02
    bool higher_is_better = false;
    bool given = false;  // named by --metric: must exist in the results
};

// "PATH", "PATH:TOL%", "PATH:higher", "PATH:TOL%:lower" ...; the direction defaults to higher_is_better(PATH).
MetricSpec parse_metric(const std::string& text, double default_tolerance);

// One file: a single result (a JSON object with "schema") or a sweep's records (JSON Lines).
struct ResultEntry {
    std::string key;    // the axis values (canonical JSON) of a sweep point; "" for a single result
    std::string label;  // "k=v k=v", or "result"
    bool ok = true;
    ordered_json result;
    std::string error;
};

struct ResultSet {
    std::string path;
    bool sweep = false;
    std::string schema;
    std::vector<std::string> axis_keys;
    std::vector<ResultEntry> entries;
};

ResultSet load_results(const std::string& path);

struct CompareRow {
    std::string label, metric;
    double base = 0, now = 0, delta = 0;  // delta: (now - base) / |base|
    double tolerance = 0;
    bool higher_is_better = false;
    bool regressed = false;  // worse beyond tolerance (or, with drift, changed beyond it): a failure
    bool drifted = false;    // drift only: better beyond tolerance, counted as a failure
    std::string note;        // a failed point instead of numbers
};

struct CompareReport {
    std::string base_path, new_path, schema;
    std::vector<CompareRow> rows;
    std::vector<std::string> only_base, only_new;  // sweep points without a partner
    bool drift = false;                            // compared with drift: see compare_results
    int regressions() const;                       // rows that fail (regressed, drift included)
    int failures() const;                          // regressions, and with drift the points without a partner
};

// Matches the entries and compares `metrics` (empty: the schema's headline metrics with `tolerance`).
// Mismatched files (a result and a sweep, other schemas or axes, nothing in common) are UserErrors.
// `drift` (the regression gate of the simulator itself, `compare --drift`): a change beyond the tolerance in
// either direction fails, and so does a point found in one file only or a change of a point's status.
CompareReport compare_results(const ResultSet& base, const ResultSet& now, std::vector<MetricSpec> metrics,
                              double tolerance, bool drift = false);

std::string to_table(const CompareReport& report);
std::string to_junit(const CompareReport& report);

}  // namespace trnsim::cli
