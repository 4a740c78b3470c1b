#include "compare.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "sweep_records.h"
#include "trnsim/core/error.h"
#include "trnsim/core/process.h"

namespace trnsim::cli {

double parse_tolerance(const std::string& text, const std::string& flag) {
    const std::string allowed = "allowed: a percentage with its %, e.g. 2% or 0.5%";
    if (text.size() < 2 || text.back() != '%') throw UserError(fmt::format("{} {}: {}", flag, text, allowed));
    const std::string number = text.substr(0, text.size() - 1);
    char* end = nullptr;
    const double v = std::strtod(number.c_str(), &end);
    if (*end != '\0' || !std::isfinite(v) || v < 0 || v > 1e6)
        throw UserError(fmt::format("{} {}: {}", flag, text, allowed));
    return v / 100.0;
}

MetricSpec parse_metric(const std::string& text, double default_tolerance) {
    MetricSpec m;
    m.given = true;
    m.tolerance = default_tolerance;
    std::size_t start = 0;
    std::vector<std::string> parts;
    for (;;) {
        const auto colon = text.find(':', start);
        parts.push_back(text.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    m.path = parts[0];
    if (m.path.empty())
        throw UserError(fmt::format("--metric {}: allowed PATH[:TOL%][:higher|lower], e.g. step_time_s:5%", text));
    m.higher_is_better = higher_is_better(m.path);
    for (std::size_t i = 1; i < parts.size(); ++i) {
        if (parts[i] == "higher")
            m.higher_is_better = true;
        else if (parts[i] == "lower")
            m.higher_is_better = false;
        else
            m.tolerance = parse_tolerance(parts[i], "--metric " + text + ":");
    }
    return m;
}

namespace {

std::string read_text(const std::string& path) {
    auto text = read_file(path);
    if (!text) throw UserError(fmt::format("compare: {}: cannot read it (no such file, or not readable)", path));
    return std::move(*text);
}

std::string format_value(double v) {
    return fmt::format("{:.6g}", v);
}

std::string xml_escape(const std::string& text) {
    std::string out;
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') break;  // not allowed in XML 1.0
                out += c;
        }
    }
    return out;
}

std::string delta_text(const CompareRow& r) {
    if (!r.note.empty()) return "";
    if (std::isinf(r.delta)) return r.delta > 0 ? "+inf%" : "-inf%";
    return fmt::format("{:+.2f}%", r.delta * 100);
}

std::string verdict(const CompareRow& r) {
    if (r.drifted) return "DRIFT";
    if (r.regressed) return "REGRESSION";
    if (!r.note.empty()) return "-";
    const double better = r.higher_is_better ? r.now - r.base : r.base - r.now;
    if (better > r.tolerance * std::fabs(r.base) && better > 0) return "better";
    return "ok";
}

std::string describe_row(const CompareRow& r) {
    if (!r.note.empty()) return r.note;
    return fmt::format("{}: base {}, new {} ({}; {} is better, tolerance {}%{})", r.metric, format_value(r.base),
                       format_value(r.now), delta_text(r), r.higher_is_better ? "higher" : "lower",
                       format_value(r.tolerance * 100), r.drifted ? ", either way with --drift" : "");
}

std::string only_in_text(const std::string& path, const std::string& label) {
    return fmt::format("only in {}: {}", path, label);
}

}  // namespace

ResultSet load_results(const std::string& path) {
    const std::string text = read_text(path);
    ResultSet set;
    set.path = path;
    try {
        const ordered_json j = ordered_json::parse(text);
        if (j.is_object() && j.contains("schema") && j["schema"].is_string()) {
            set.schema = j["schema"].get<std::string>();
            ResultEntry e;
            e.label = "result";
            e.result = j;
            set.entries.push_back(std::move(e));
            return set;
        }
    } catch (const std::exception&) {
        // not one JSON object: JSON Lines, below
    }
    RecordFile file;
    try {
        file = read_records(path);
    } catch (const UserError&) {
        throw UserError(
            fmt::format("compare: {}: neither a trnsim result (a JSON object with \"schema\": "
                        "\"trnsim.<command>/1\") nor a sweep output (JSON Lines of trnsim sweep)",
                        path));
    }
    if (file.records.empty())
        throw UserError(
            fmt::format("compare: {}: a sweep output without records; allowed: a result or the output "
                        "of a sweep that ran",
                        path));
    set.sweep = true;
    set.schema = record_schema(file.records.front());
    for (const auto& [k, v] : file.records.front()["axes"].items()) set.axis_keys.push_back(k);
    std::sort(set.axis_keys.begin(), set.axis_keys.end());  // matched by name, whatever the order in the file
    for (const auto& r : file.records) {
        ResultEntry e;
        e.key = nlohmann::json(r["axes"]).dump();  // sorted keys
        for (const auto& [k, v] : r["axes"].items())
            e.label += (e.label.empty() ? "" : " ") + k + "=" + v.get<std::string>();
        if (e.label.empty()) e.label = "(base)";
        e.ok = r["status"] == "ok";
        if (e.ok)
            e.result = r["result"];
        else
            e.error = r.value("error", "failed");
        set.entries.push_back(std::move(e));
    }
    return set;
}

int CompareReport::regressions() const {
    int n = 0;
    for (const auto& r : rows) n += r.regressed ? 1 : 0;
    return n;
}

int CompareReport::failures() const {
    const int unmatched = drift ? static_cast<int>(only_base.size() + only_new.size()) : 0;
    return regressions() + unmatched;
}

CompareReport compare_results(const ResultSet& base, const ResultSet& now, std::vector<MetricSpec> metrics,
                              double tolerance, bool drift) {
    if (base.sweep != now.sweep) {
        throw UserError(fmt::format("compare: {} is {} but {} is {}; allowed: two results, or two sweep outputs",
                                    base.path, base.sweep ? "a sweep output" : "a single result", now.path,
                                    now.sweep ? "a sweep output" : "a single result"));
    }
    if (base.schema != now.schema) {
        throw UserError(
            fmt::format("compare: {} holds {} results but {} holds {}; allowed: results of the same "
                        "command",
                        base.path, base.schema, now.path, now.schema));
    }
    auto keys_text = [](const std::vector<std::string>& keys) {
        std::string out;
        for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
        return out.empty() ? std::string("none") : out;
    };
    if (base.axis_keys != now.axis_keys) {
        throw UserError(
            fmt::format("compare: {} sweeps the axes ({}) but {} sweeps ({}); allowed: sweep outputs "
                        "with the same axes, matched by their values",
                        base.path, keys_text(base.axis_keys), now.path, keys_text(now.axis_keys)));
    }
    if (metrics.empty()) {
        for (const auto& path : headline_metrics(base.schema)) {
            MetricSpec m;
            m.path = path;
            m.tolerance = tolerance;
            m.higher_is_better = higher_is_better(path);
            metrics.push_back(m);
        }
    }
    CompareReport report;
    report.base_path = base.path;
    report.new_path = now.path;
    report.schema = base.schema;
    report.drift = drift;
    std::map<std::string, const ResultEntry*> by_key;
    for (const auto& e : now.entries) by_key[e.key] = &e;
    std::map<std::string, bool> matched;
    for (const auto& b : base.entries) {
        const auto it = by_key.find(b.key);
        if (it == by_key.end()) {
            report.only_base.push_back(b.label);
            continue;
        }
        matched[b.key] = true;
        const ResultEntry& n = *it->second;
        if (!n.ok || !b.ok) {
            CompareRow row;
            row.label = b.label;
            row.metric = "status";
            row.regressed = b.ok && !n.ok;  // a point that ran before and fails now is a regression
            row.note = !n.ok ? (b.ok ? "fails in NEW: " + n.error : "fails in both") : "fails in BASE: " + b.error;
            if (drift && !b.ok && (n.ok || n.error != b.error)) {
                // the gate wants the baseline back: a point that starts to work, or fails differently, drifted
                row.regressed = row.drifted = true;
                if (!n.ok) row.note = "fails in both, differently: BASE " + b.error + "; NEW " + n.error;
            }
            report.rows.push_back(row);
            continue;
        }
        for (const auto& m : metrics) {
            const ordered_json* vb = find_path(b.result, m.path);
            const ordered_json* vn = find_path(n.result, m.path);
            if (vb == nullptr || vn == nullptr) {
                if (!m.given) continue;  // a default metric this result does not have (a collective size sweep)
                throw UserError(fmt::format(
                    "--metric {}: not in {} ({}); allowed: a dotted path to a number in the result, e.g. {}", m.path,
                    vb == nullptr ? base.path : now.path, b.label,
                    headline_metrics(base.schema).empty() ? "time_s" : headline_metrics(base.schema).front()));
            }
            if (!vb->is_number() || !vn->is_number()) {
                throw UserError(fmt::format("--metric {}: not a number in {} ({}); allowed: a path to a number", m.path,
                                            base.path, b.label));
            }
            CompareRow row;
            row.label = b.label;
            row.metric = m.path;
            row.base = vb->get<double>();
            row.now = vn->get<double>();
            row.tolerance = m.tolerance;
            row.higher_is_better = m.higher_is_better;
            const double diff = row.now - row.base;
            row.delta = row.base != 0 ? diff / std::fabs(row.base)
                        : diff == 0   ? 0.0
                                      : std::copysign(std::numeric_limits<double>::infinity(), diff);
            const double worse = m.higher_is_better ? -diff : diff;
            const double allowed = m.tolerance * std::fabs(row.base);
            row.regressed = worse > 0 && worse > allowed;
            if (drift && !row.regressed && -worse > allowed) row.regressed = row.drifted = true;
            report.rows.push_back(row);
        }
    }
    for (const auto& n : now.entries)
        if (!matched.count(n.key)) report.only_new.push_back(n.label);
    if (matched.empty()) {
        throw UserError(
            fmt::format("compare: {} and {} have no sweep point in common (matched by axis values); "
                        "allowed: outputs of the same sweep axes",
                        base.path, now.path));
    }
    return report;
}

std::string to_table(const CompareReport& r) {
    std::size_t label_w = 5, metric_w = 6;
    for (const auto& row : r.rows) {
        label_w = std::max(label_w, row.label.size());
        metric_w = std::max(metric_w, row.metric.size());
    }
    std::string out = fmt::format("trnsim compare: {} -> {} ({})\n", r.base_path, r.new_path, r.schema);
    out += fmt::format("  {:<{}}  {:<{}}  {:>14}  {:>14}  {:>10}  {}\n", "point", label_w, "metric", metric_w, "base",
                       "new", "delta", "verdict");
    for (const auto& row : r.rows) {
        if (!row.note.empty()) {
            out += fmt::format("  {:<{}}  {:<{}}  {}  {}\n", row.label, label_w, row.metric, metric_w, row.note,
                               row.drifted     ? "DRIFT"
                               : row.regressed ? "REGRESSION"
                                               : "");
            continue;
        }
        out += fmt::format("  {:<{}}  {:<{}}  {:>14}  {:>14}  {:>10}  {}\n", row.label, label_w, row.metric, metric_w,
                           format_value(row.base), format_value(row.now), delta_text(row), verdict(row));
    }
    const std::string missing = r.drift ? "  MISSING" : "";
    for (const auto& l : r.only_base) out += "  " + only_in_text(r.base_path, l) + missing + "\n";
    for (const auto& l : r.only_new) out += "  " + only_in_text(r.new_path, l) + missing + "\n";
    if (!r.drift) {
        out += fmt::format("{} comparisons, {} regressions beyond tolerance\n", r.rows.size(), r.regressions());
        return out;
    }
    int drifted = 0;
    for (const auto& row : r.rows) drifted += row.drifted ? 1 : 0;
    out += fmt::format(
        "{} comparisons, {} worse and {} better beyond tolerance, {} points in one file only (--drift: "
        "{} failures)\n",
        r.rows.size(), r.regressions() - drifted, drifted, r.only_base.size() + r.only_new.size(), r.failures());
    return out;
}

std::string to_junit(const CompareReport& r) {
    const int failures = r.failures();
    const std::size_t unmatched = r.drift ? r.only_base.size() + r.only_new.size() : 0;
    const std::size_t tests = r.rows.size() + unmatched;
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += fmt::format("<testsuites name=\"trnsim compare\" tests=\"{}\" failures=\"{}\" errors=\"0\">\n", tests,
                       failures);
    out += fmt::format("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\">\n",
                       xml_escape("trnsim compare " + r.base_path + " -> " + r.new_path), tests, failures);
    for (const auto& row : r.rows) {
        out += fmt::format("    <testcase classname=\"{}\" name=\"{}\"", xml_escape(row.label), xml_escape(row.metric));
        if (!row.regressed) {
            out +=
                fmt::format(">\n      <system-out>{}</system-out>\n    </testcase>\n", xml_escape(describe_row(row)));
            continue;
        }
        out += fmt::format(">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                           xml_escape(describe_row(row)), row.drifted ? "drift" : "regression",
                           xml_escape(describe_row(row)));
    }
    if (r.drift) {
        // with --drift a point in one file only fails: a case added or removed without refreshing the baseline
        auto missing = [&out](const std::string& path, const std::string& label) {
            const std::string text = xml_escape(only_in_text(path, label));
            out += fmt::format(
                "    <testcase classname=\"{}\" name=\"point\">\n      <failure message=\"{}\" "
                "type=\"missing\">{}</failure>\n    </testcase>\n",
                xml_escape(label), text, text);
        };
        for (const auto& l : r.only_base) missing(r.base_path, l);
        for (const auto& l : r.only_new) missing(r.new_path, l);
    }
    out += "  </testsuite>\n</testsuites>\n";
    return out;
}

}  // namespace trnsim::cli
