#include <cstdio>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "commands.h"
#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/workload/model.h"

namespace trnsim::cli {

std::function<int()> add_presets_command(CLI::App& app) {
    app.add_subcommand("presets", "list the presets embedded in trnsim");
    return [] {
        std::printf("chips (--chip):\n");
        for (const auto& name : preset_names("chips")) {
            const YAML::Node node = YAML::Load(find_preset("chips", name)->text);
            const std::string desc = node["description"] ? node["description"].as<std::string>() : "";
            std::printf("  %-8s %s\n", name.c_str(), desc.c_str());
        }
        std::printf("HBM parts (--memory, or --set chip.memory.hbm.part=NAME):\n");
        for (const auto& name : preset_names("memory")) {
            const YAML::Node node = YAML::Load(find_preset("memory", name)->text);
            const std::string desc = node["description"] ? node["description"].as<std::string>() : "";
            std::printf("  %-17s %s\n", name.c_str(), desc.c_str());
        }
        std::printf("clusters (trnsim run / collective --cluster):\n");
        for (const auto& name : preset_names("clusters")) {
            const YAML::Node node = YAML::Load(find_preset("clusters", name)->text);
            const std::string desc = node["description"] ? node["description"].as<std::string>() : "";
            std::printf("  %-21s %s\n", name.c_str(), desc.c_str());
        }
        std::printf("models (trnsim run --model):\n");
        for (const auto& name : workload::model_preset_names()) {
            const auto model = workload::load_model(name);
            const auto params = workload::parameter_count(model).total;
            std::printf("  %-14s %6.2fB parameters, %lld layers, hidden %lld. %s\n", name.c_str(), params * 1e-9,
                        static_cast<long long>(model.layers), static_cast<long long>(model.hidden),
                        model.source.c_str());
        }
        return 0;
    };
}

std::function<int()> add_describe_command(CLI::App& app) {
    auto opts = std::make_shared<ChipOptions>();
    auto cluster = std::make_shared<std::string>();
    auto* sub = app.add_subcommand(
        "describe", "print a chip's (or with --cluster, a cluster's) resolved configuration with units and sources");
    auto* chip = sub->add_option("chip", opts->chip, "chip preset or YAML file");
    sub->add_option("--cluster", *cluster, "a cluster preset or YAML file instead of a chip");
    sub->add_option("--config", opts->files, "YAML file overlaid on the preset (repeatable)")->allow_extra_args(false);
    sub->add_option("--set", opts->overrides, "override one key: dotted.key=value (repeatable)")
        ->allow_extra_args(false);
    return [opts, cluster, chip] {
        if ((chip->count() > 0) == !cluster->empty())
            throw UserError("describe: give a chip (trnsim describe trn2) or --cluster NAME, one of them");
        const Config config = cluster->empty() ? hw::resolve_chip_config(opts->chip, opts->files, opts->overrides)
                                               : hw::resolve_cluster_config(*cluster, opts->files, opts->overrides);
        std::printf("%s, resolved (key = value  [type] source -- meaning)\n",
                    cluster->empty() ? opts->chip.c_str() : cluster->c_str());
        for (const auto& d : config.registry().all()) {
            const auto& v = config.raw(d.key);
            std::printf("  %-46s = %-10s [%s] %s -- %s\n", d.key.c_str(), v.text.c_str(), param_type_name(d.type),
                        v.source.c_str(), d.doc.c_str());
        }
        return 0;
    };
}

}  // namespace trnsim::cli
