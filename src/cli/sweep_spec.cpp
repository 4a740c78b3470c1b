#include "sweep_spec.h"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "commands.h"
#include "trnsim/core/config.h"
#include "trnsim/core/error.h"
#include "trnsim/core/process.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/cluster_spec.h"

namespace trnsim::cli {

namespace {

// The options a sweep leaves to itself: each point writes its result where the sweep says (json), traces
// would be one file per point (trace), and run points share the sweep's kernel cache (cache).
const std::set<std::string> k_reserved = {"json", "trace", "cache", "help"};

struct OptionInfo {
    std::string name;
    bool flag = false;
    bool repeatable = false;
    bool positional = false;
};

// Registers the command on `app`; the returned runner owns the storage its options parse into, so it must
// outlive any parse.
std::function<int()> add_command(CLI::App& app, const std::string& command) {
    if (command == "run") return add_run_command(app);
    if (command == "kernel") return add_kernel_command(app);
    if (command == "mem") return add_mem_command(app);
    return add_collective_command(app);
}

std::vector<OptionInfo> command_options(const std::string& command) {
    // The options as the command registers them on its CLI11 subcommand: one list, no copy to keep in step.
    CLI::App app;
    const auto runner = add_command(app, command);
    std::vector<OptionInfo> out;
    for (const CLI::Option* opt : app.get_subcommand(command)->get_options()) {
        OptionInfo info;
        info.positional = opt->get_lnames().empty();
        info.name = info.positional ? opt->get_name(true) : opt->get_lnames().front();
        if (k_reserved.count(info.name)) continue;
        info.flag = opt->get_expected_max() == 0;
        info.repeatable = opt->get_expected_max() > 1;
        out.push_back(info);
    }
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
}

class SpecParser {
public:
    explicit SpecParser(std::string file) : m_file(std::move(file)) {}

    SweepSpec parse(const std::string& text) {
        const YAML::Node root = parse_yaml(text, "sweep file " + m_file);
        if (!root.IsMap()) fail("", "expected a mapping with the keys command, base, grid, zip (and description)");
        const std::set<std::string> top = {"command", "base", "grid", "zip", "description"};
        for (const auto& kv : root) {
            const std::string key = kv.first.as<std::string>();
            if (!top.count(key))
                fail(key, "unknown key; allowed at the top level: command, base, grid, zip, description");
        }
        SweepSpec spec;
        spec.file = m_file;
        if (!root["command"] || !root["command"].IsScalar())
            fail("command", "missing; allowed: " + join(sweep_commands()));
        spec.command = root["command"].as<std::string>();
        m_command = spec.command;
        const auto& cmds = sweep_commands();
        if (std::find(cmds.begin(), cmds.end(), spec.command) == cmds.end())
            fail("command", fmt::format("unknown command '{}'; allowed: {}", spec.command, join(cmds)));
        for (const auto& o : command_options(spec.command)) m_options.emplace(o.name, o);
        m_registry = (spec.command == "run" || spec.command == "collective") ? &hw::cluster_param_registry()
                                                                             : &hw::hw_param_registry();

        std::set<std::string> base_keys;
        if (const YAML::Node base = root["base"]) {
            if (!base.IsMap()) fail("base", "expected a mapping of option: value");
            parse_base(base, spec, base_keys);
        }
        if (const YAML::Node grid = root["grid"]) spec.grid = parse_axes(grid, "grid", base_keys);
        std::set<std::string> seen;
        for (const auto& a : spec.grid) seen.insert(a.key);
        if (const YAML::Node zip = root["zip"]) {
            spec.zip = parse_axes(zip, "zip", base_keys);
            for (const auto& a : spec.zip) {
                if (seen.count(a.key)) fail("zip." + a.key, "also a grid axis; an axis belongs to grid or zip");
                if (a.values.size() != spec.zip.front().values.size()) {
                    fail("zip." + a.key,
                         fmt::format("{} values, but zip.{} has {}; allowed: zip lists of the same length",
                                     a.values.size(), spec.zip.front().key, spec.zip.front().values.size()));
                }
            }
        }
        return spec;
    }

private:
    [[noreturn]] void fail(const std::string& path, const std::string& what) const {
        if (path.empty()) throw UserError(fmt::format("sweep file {}: {}", m_file, what));
        throw UserError(fmt::format("sweep file {}: {}: {}", m_file, path, what));
    }

    std::string allowed_options() const {
        std::vector<std::string> names;
        for (const auto& [name, o] : m_options) names.push_back(name);
        return join(names);
    }

    std::string scalar(const YAML::Node& node, const std::string& path) const {
        if (!node.IsScalar()) fail(path, "expected a value (text, number or true/false)");
        return node.Scalar();
    }

    // A config key and value, checked against the parameter declarations (name, type, unit, range).
    void check_config_value(const std::string& key, const std::string& value, const std::string& path) const {
        Config probe(*m_registry);
        probe.set(key, value, fmt::format("sweep file {}: {}", m_file, path));
    }

    void add_option(std::vector<std::string>& args, const OptionInfo& o, const std::string& value,
                    const std::string& path) const {
        if (o.positional) {
            args.push_back(value);
        } else if (o.flag) {
            if (value == "true")
                args.push_back("--" + o.name);
            else if (value != "false")
                fail(path, fmt::format("'{}': {} is a flag; allowed: true, false", value, o.name));
        } else {
            args.push_back("--" + o.name);
            args.push_back(value);
        }
    }

    void parse_base(const YAML::Node& base, SweepSpec& spec, std::set<std::string>& keys) {
        std::vector<std::string> positional, options, sets;
        for (const auto& kv : base) {
            const std::string key = kv.first.as<std::string>();
            const std::string path = "base." + key;
            keys.insert(key);
            if (k_reserved.count(key))
                fail(path, "set by trnsim sweep for every point (--json per point, --cache shared); not allowed here");
            if (key == "set") {
                parse_set(kv.second, path, sets, keys);
                continue;
            }
            const auto it = m_options.find(key);
            if (it == m_options.end()) {
                fail(path, fmt::format("unknown option of trnsim {}; allowed: {} (config keys go under base.set)",
                                       spec.command, allowed_options()));
            }
            const OptionInfo& o = it->second;
            auto& out = o.positional ? positional : options;
            if (kv.second.IsSequence()) {
                if (!o.repeatable) fail(path, "expected one value; only repeatable options (config) take a list");
                for (std::size_t i = 0; i < kv.second.size(); ++i)
                    add_option(out, o, scalar(kv.second[i], fmt::format("{}[{}]", path, i)), path);
            } else {
                add_option(out, o, scalar(kv.second, path), path);
            }
        }
        spec.base_args = positional;
        spec.base_args.insert(spec.base_args.end(), options.begin(), options.end());
        spec.base_args.insert(spec.base_args.end(), sets.begin(), sets.end());
    }

    void parse_set(const YAML::Node& node, const std::string& path, std::vector<std::string>& sets,
                   std::set<std::string>& keys) const {
        if (!node.IsMap()) fail(path, "expected a mapping of config key: value, e.g. {chip.memory.bandwidth: 2.9TB/s}");
        for (const auto& kv : node) {
            const std::string key = kv.first.as<std::string>();
            const std::string value = scalar(kv.second, path + "." + key);
            check_config_value(key, value, path);
            keys.insert(key);
            sets.push_back("--set");
            sets.push_back(key + "=" + value);
        }
    }

    std::vector<SweepAxis> parse_axes(const YAML::Node& node, const std::string& section,
                                      const std::set<std::string>& base_keys) const {
        if (!node.IsMap()) fail(section, "expected a mapping of key: [values]");
        std::vector<SweepAxis> axes;
        for (const auto& kv : node) {
            SweepAxis axis;
            axis.key = kv.first.as<std::string>();
            const std::string path = section + "." + axis.key;
            if (base_keys.count(axis.key)) fail(path, "also set in base; set a key in base or sweep it, not both");
            if (k_reserved.count(axis.key) || axis.key == "set")
                fail(path, fmt::format("cannot be swept; allowed: an option of trnsim {} ({}) or a config key",
                                       m_command, allowed_options()));
            const auto it = m_options.find(axis.key);
            axis.option = it != m_options.end();
            axis.flag = axis.option && it->second.flag;
            if (!axis.option && axis.key.find('.') == std::string::npos) {
                fail(path, fmt::format("not an option of trnsim {}; allowed: {}, or a dotted config key such as "
                                       "{} (trnsim describe lists them)",
                                       m_command, allowed_options(),
                                       m_command == "run" || m_command == "collective" ? "cluster.link.bandwidth"
                                                                                       : "chip.memory.bandwidth"));
            }
            if (!kv.second.IsSequence()) fail(path, "expected a list of values, e.g. [1, 2, 4]");
            if (kv.second.size() == 0) fail(path, "empty list; allowed: a list of one or more values");
            for (std::size_t i = 0; i < kv.second.size(); ++i) {
                const std::string vpath = fmt::format("{}[{}]", path, i);
                const std::string value = scalar(kv.second[i], vpath);
                if (axis.option) {
                    if (it->second.flag && value != "true" && value != "false")
                        fail(vpath, fmt::format("'{}': {} is a flag; allowed: true, false", value, axis.key));
                } else {
                    check_config_value(axis.key, value, section);
                }
                axis.values.push_back(value);
            }
            axes.push_back(std::move(axis));
        }
        return axes;
    }

    std::string m_file;
    std::string m_command;  // for messages
    std::map<std::string, OptionInfo> m_options;
    const ParamRegistry* m_registry = nullptr;
};

}  // namespace

const std::vector<std::string>& sweep_commands() {
    static const std::vector<std::string> commands = {"run", "kernel", "mem", "collective"};
    return commands;
}

std::vector<std::string> sweep_option_names(const std::string& command) {
    std::vector<std::string> names;
    for (const auto& o : command_options(command)) names.push_back(o.name);
    return names;
}

SweepSpec parse_sweep_spec_text(const std::string& text, const std::string& file) {
    return SpecParser(file).parse(text);
}

SweepSpec parse_sweep_spec(const std::string& path) {
    const auto text = read_file(path);
    if (!text) throw UserError(fmt::format("sweep file {}: cannot read it (no such file, or not readable)", path));
    return parse_sweep_spec_text(*text, path);
}

void check_command_args(const std::vector<std::string>& args, const std::string& context) {
    CLI::App app;
    const auto runner = add_command(app, args.at(0));
    try {
        app.parse(std::vector<std::string>(args.rbegin(), args.rend()));  // CLI11 takes them last first
    } catch (const CLI::ParseError& e) {
        std::string cmdline = "trnsim";
        for (const auto& a : args) cmdline += " " + a;
        throw UserError(fmt::format("{}: '{}' is rejected: {}", context, cmdline, e.what()));
    }
}

void check_spec_args(const SweepSpec& spec) {
    // Each axis value with the first value of every other axis: every value is checked once, not every point.
    auto first_only = [](std::vector<SweepAxis> axes) {
        for (auto& a : axes) a.values.resize(1);
        return axes;
    };
    SweepSpec probe = spec;
    probe.grid = first_only(spec.grid);
    probe.zip = first_only(spec.zip);
    check_command_args(expand_point(probe, 0).args, fmt::format("sweep file {}: base", spec.file));
    for (const auto* section : {&spec.grid, &spec.zip}) {
        const bool grid = section == &spec.grid;
        for (std::size_t i = 0; i < section->size(); ++i) {
            const SweepAxis& axis = (*section)[i];
            if (!axis.option) continue;
            for (std::size_t v = 0; v < axis.values.size(); ++v) {
                SweepSpec one = probe;
                (grid ? one.grid : one.zip)[i].values = {axis.values[v]};
                check_command_args(expand_point(one, 0).args, fmt::format("sweep file {}: {}.{}[{}]", spec.file,
                                                                          grid ? "grid" : "zip", axis.key, v));
            }
        }
    }
}

std::size_t point_count(const SweepSpec& spec) {
    std::size_t n = 1;
    for (const auto& a : spec.grid) n *= a.values.size();
    if (!spec.zip.empty()) n *= spec.zip.front().values.size();
    return n;
}

SweepPoint expand_point(const SweepSpec& spec, std::size_t index) {
    SweepPoint p;
    p.index = index;
    // Mixed-radix digits: the zip group is the innermost digit, the last grid axis the next, and so on.
    std::vector<std::size_t> digit(spec.grid.size());
    std::size_t rest = index;
    std::size_t zip_digit = 0;
    if (!spec.zip.empty()) {
        zip_digit = rest % spec.zip.front().values.size();
        rest /= spec.zip.front().values.size();
    }
    for (std::size_t i = spec.grid.size(); i-- > 0;) {
        digit[i] = rest % spec.grid[i].values.size();
        rest /= spec.grid[i].values.size();
    }
    std::vector<std::pair<const SweepAxis*, std::string>> chosen;
    for (std::size_t i = 0; i < spec.grid.size(); ++i)
        chosen.emplace_back(&spec.grid[i], spec.grid[i].values[digit[i]]);
    for (const auto& a : spec.zip) chosen.emplace_back(&a, a.values[zip_digit]);

    p.args.push_back(spec.command);
    std::vector<std::string> positional, options, sets;
    for (const auto& [axis, value] : chosen) {
        p.axes.emplace_back(axis->key, value);
        if (!axis->option) {
            sets.push_back("--set");
            sets.push_back(axis->key + "=" + value);
        } else if (spec.command == "kernel" && axis->key == "op") {
            positional.push_back(value);
        } else if (axis->flag) {
            if (value == "true") options.push_back("--" + axis->key);  // false: the flag left out
        } else {
            options.push_back("--" + axis->key);
            options.push_back(value);
        }
    }
    p.args.insert(p.args.end(), positional.begin(), positional.end());
    p.args.insert(p.args.end(), spec.base_args.begin(), spec.base_args.end());
    p.args.insert(p.args.end(), options.begin(), options.end());
    p.args.insert(p.args.end(), sets.begin(), sets.end());
    return p;
}

std::vector<SweepPoint> expand(const SweepSpec& spec) {
    std::vector<SweepPoint> points;
    const std::size_t n = point_count(spec);
    points.reserve(n);
    for (std::size_t i = 0; i < n; ++i) points.push_back(expand_point(spec, i));
    return points;
}

namespace {

int parse_positive(const std::string& text, const std::string& what, const std::string& whole) {
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v < 1 || v > 1000000) {
        throw UserError(
            fmt::format("--shard {}: {} '{}' is not a positive integer; allowed: K/N with 1 <= K <= N, "
                        "or auto (Slurm job array, Kubernetes indexed Job)",
                        whole, what, text));
    }
    return static_cast<int>(v);
}

}  // namespace

Shard parse_shard(const std::string& text, const std::map<std::string, std::string>& env) {
    auto get = [&](const char* name) {
        const auto it = env.find(name);
        return it == env.end() ? std::string() : it->second;
    };
    Shard s;
    const auto slash = text.find('/');
    const std::string head = text.substr(0, slash);
    if (head == "auto") {
        std::string count = slash == std::string::npos ? "" : text.substr(slash + 1);
        int index0 = 0;
        if (!get("SLURM_ARRAY_TASK_ID").empty()) {
            const std::string id = get("SLURM_ARRAY_TASK_ID");
            const std::string min = get("SLURM_ARRAY_TASK_MIN").empty() ? "0" : get("SLURM_ARRAY_TASK_MIN");
            char* end = nullptr;
            const long a = std::strtol(id.c_str(), &end, 10);
            const bool ok_id = *end == '\0';
            const long b = std::strtol(min.c_str(), &end, 10);
            if (!ok_id || *end != '\0' || a < b)
                throw UserError(
                    fmt::format("--shard auto: SLURM_ARRAY_TASK_ID={} (SLURM_ARRAY_TASK_MIN={}) is not a "
                                "task index; allowed: an array job such as sbatch --array=0-7",
                                id, min));
            index0 = static_cast<int>(a - b);
            if (count.empty()) count = get("SLURM_ARRAY_TASK_COUNT");
        } else if (!get("JOB_COMPLETION_INDEX").empty()) {
            const std::string id = get("JOB_COMPLETION_INDEX");
            char* end = nullptr;
            const long a = std::strtol(id.c_str(), &end, 10);
            if (*end != '\0' || a < 0)
                throw UserError(fmt::format("--shard auto: JOB_COMPLETION_INDEX={} is not an index", id));
            index0 = static_cast<int>(a);
            if (count.empty()) count = get("TRNSIM_SHARD_COUNT");
        } else {
            throw UserError(
                "--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes "
                "indexed Job) is set; allowed: --shard K/N, or auto inside one of those");
        }
        if (count.empty())
            throw UserError(
                "--shard auto: the shard count is unknown; allowed: --shard auto/N, or set "
                "SLURM_ARRAY_TASK_COUNT (Slurm) or TRNSIM_SHARD_COUNT (Kubernetes: the Job's completions)");
        s.count = parse_positive(count, "count", text);
        s.index = index0 + 1;
        if (s.index > s.count)
            throw UserError(fmt::format("--shard {}: task index {} is not below the count {}; allowed: indices 0..{}",
                                        text, index0, s.count, s.count - 1));
        return s;
    }
    if (slash == std::string::npos)
        throw UserError(fmt::format("--shard {}: allowed K/N with 1 <= K <= N (e.g. 3/8), or auto", text));
    s.index = parse_positive(head, "index", text);
    s.count = parse_positive(text.substr(slash + 1), "count", text);
    if (s.index > s.count)
        throw UserError(fmt::format("--shard {}: index {} is above the count {}; allowed: K/N with 1 <= K <= N", text,
                                    s.index, s.count));
    return s;
}

std::map<std::string, std::string> shard_environment() {
    std::map<std::string, std::string> env;
    for (const char* name : {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT",
                             "JOB_COMPLETION_INDEX", "TRNSIM_SHARD_COUNT"}) {
        if (const char* v = std::getenv(name)) env[name] = v;
    }
    return env;
}

}  // namespace trnsim::cli
