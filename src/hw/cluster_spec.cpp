#include "trnsim/hw/cluster_spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "trnsim/core/error.h"
#include "trnsim/hw/chip.h"

namespace trnsim::hw {

namespace {

const char* k_topology_forms =
    "ring:N, torus2d:AxB, torus3d:AxBxC, full:N (every pair of chips directly linked), switch:N (one switch), "
    "switch2:GxC (G groups of C chips: a first-level switch per group and a second-level switch over all)";

std::vector<int> parse_dims(const std::string& text, const std::string& spec) {
    std::vector<int> dims;
    std::size_t pos = 0;
    while (pos <= spec.size()) {
        const std::size_t x = spec.find('x', pos);
        const std::string part = spec.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
        if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos || part.size() > 6) {
            throw UserError(fmt::format("cluster.topology = '{}': '{}' is not a positive count; allowed: {}", text,
                                        part, k_topology_forms));
        }
        const int v = std::stoi(part);
        if (v < 1)
            throw UserError(fmt::format("cluster.topology = '{}': a count of 0; allowed: {}", text, k_topology_forms));
        dims.push_back(v);
        if (x == std::string::npos) break;
        pos = x + 1;
    }
    return dims;
}

}  // namespace

int TopologyShape::chips() const {
    int n = 1;
    for (int d : dims) n *= d;
    return n;
}

TopologyShape parse_topology(const std::string& text) {
    const std::size_t colon = text.find(':');
    if (colon == std::string::npos) {
        throw UserError(
            fmt::format("cluster.topology = '{}': expected KIND:SIZE; allowed: {}", text, k_topology_forms));
    }
    TopologyShape s;
    s.text = text;
    s.kind = text.substr(0, colon);
    s.dims = parse_dims(text, text.substr(colon + 1));
    std::size_t want = 0;
    if (s.kind == "ring" || s.kind == "full" || s.kind == "switch") want = 1;
    if (s.kind == "torus2d" || s.kind == "switch2") want = 2;
    if (s.kind == "torus3d") want = 3;
    if (want == 0) {
        throw UserError(
            fmt::format("cluster.topology = '{}': unknown topology '{}'; allowed: {}", text, s.kind, k_topology_forms));
    }
    if (s.dims.size() != want) {
        throw UserError(fmt::format("cluster.topology = '{}': {} takes {} size{}; allowed: {}", text, s.kind, want,
                                    want == 1 ? "" : "s", k_topology_forms));
    }
    if (s.chips() > 65536) {
        throw UserError(fmt::format("cluster.topology = '{}': {} chips; allowed at most 65536", text, s.chips()));
    }
    return s;
}

void ClusterSpec::declare(ParamRegistry& r) {
    const double max_bw = 1e15;
    r.declare({"cluster.name", ParamType::text, "cluster name", std::nullopt, "", {}});
    r.declare({"cluster.chip",
               ParamType::text,
               "chip preset (configs/chips) or chip YAML file of every chip",
               std::nullopt,
               "",
               {}});
    r.declare({"cluster.topology",
               ParamType::text,
               std::string("chips of one node and their wiring: ") + k_topology_forms,
               std::nullopt,
               "",
               {}});
    r.declare({"cluster.nodes",
               ParamType::integer,
               "nodes (copies of the topology) joined by EFA",
               "1",
               "assumption: one node",
               {},
               1,
               4096});
    r.declare({"cluster.ranks_per_chip",
               ParamType::integer,
               "collective ranks per chip (logical NeuronCores); ranks on one chip exchange data through its memory",
               "1",
               "assumption: one rank per chip",
               {},
               1,
               64});
    r.declare({"cluster.link.bandwidth",
               ParamType::bandwidth,
               "chip-to-chip link (and chip-to-switch uplink) bandwidth, one direction",
               std::nullopt,
               "",
               {},
               k_min_bandwidth,
               max_bw});
    r.declare({"cluster.link.latency",
               ParamType::duration,
               "per-hop latency of a chip-to-chip link or uplink",
               std::nullopt,
               "",
               {},
               0,
               1e-2});
    r.declare({"cluster.link.packet",
               ParamType::bytes,
               "packet size: the unit links serialize and arbitrate, and DMA engines move",
               "64KiB",
               "assumption: a DMA transfer of 16 engines x 4 KiB (the per-partition size that saturates an engine, "
               "[NKI-DMABW]); 0.26 us on a 256 GB/s link, below the hop latency",
               {},
               64,
               1 << 30});
    r.declare({"cluster.link.credits",
               ParamType::integer,
               "packets of one message a DMA ring may have waiting at the message's first link (the ring reads the "
               "next packet from memory when one starts)",
               "2",
               "assumption: double buffering, enough to keep the link busy when the DMA is faster",
               {},
               1,
               1 << 20});
    // The Neuron runtime's DMA packet sizes per collective stream, which set the streams' shares of a DMA
    // ring they share (topology.h, EndpointSpec::cc_packet) [CC-OVERLAP].
    r.declare({"cluster.cc.packet",
               ParamType::bytes,
               "DMA packet size of collective stream 0 (tensor-parallel, pipeline sends, every collective but the "
               "data-parallel ones): NEURON_RT_DBG_CC_DMA_PACKET_SIZE",
               "64KiB",
               "[CC-OVERLAP] default and maximum 64 KiB",
               {},
               64,
               65536});
    r.declare(
        {"cluster.cc.dp_packet",
         ParamType::bytes,
         "DMA packet size of collective stream 1 (the data-parallel gradient reductions and ZeRO-1 parameter "
         "all-gathers); smaller than cluster.cc.packet, it gives stream 0 priority in their ratio (under round-robin "
         "DMA arbitration, chip.core.dma.arbitration)",
         "64KiB",
         "[CC-OVERLAP] runtime default (every stream 64 KiB); the setting recommended for TP with FSDP is "
         "4KiB (NEURON_RT_DBG_CC_DMA_PACKET_SIZE=65536,4096)",
         {},
         64,
         65536});
    r.declare({"cluster.zlink.bandwidth",
               ParamType::bandwidth,
               "torus3d: bandwidth of a third-dimension link, one direction",
               "128GB/s",
               "derived: [TRN2-INST] 256 GB/s per chip between instances, over 2 Z neighbours",
               {},
               k_min_bandwidth,
               max_bw});
    r.declare({"cluster.zlink.latency",
               ParamType::duration,
               "torus3d: per-hop latency of a third-dimension link",
               "0.5us",
               "assumption: as cluster.link.latency of trn2",
               {},
               0,
               1e-2});
    r.declare({"cluster.switch.l1.port_bandwidth",
               ParamType::bandwidth,
               "switch:N and switch2 first level: port bandwidth per chip, one direction",
               "256GB/s",
               "[TRN3-INST] intra-server 256 GB/s per chip (4 x PCIe Gen6 x8), taken per direction",
               {},
               k_min_bandwidth,
               max_bw});
    r.declare({"cluster.switch.l1.latency",
               ParamType::duration,
               "first-level switch traversal latency (output port included)",
               "0.5us",
               "assumption: of the order of one NeuronLink hop",
               {},
               0,
               1e-2});
    r.declare({"cluster.switch.l2.port_bandwidth",
               ParamType::bandwidth,
               "switch2 second level: port bandwidth per chip, one direction",
               "320GB/s",
               "[TRN3-INST] inter-server 320 GB/s per chip (5 x PCIe Gen6 x8), taken per direction",
               {},
               k_min_bandwidth,
               max_bw});
    r.declare({"cluster.switch.l2.latency",
               ParamType::duration,
               "second-level switch traversal latency",
               "0.5us",
               "assumption: as the first level",
               {},
               0,
               1e-2});
    r.declare({"cluster.efa.bandwidth",
               ParamType::bandwidth,
               "inter-node (EFA) NIC bandwidth per chip, one direction",
               "25GB/s",
               "[CC-ABOUT] trn2: one 200 Gbps EFA NIC per chip",
               {},
               k_min_bandwidth,
               max_bw});
    r.declare({"cluster.efa.latency",
               ParamType::duration,
               "inter-node latency, chip to chip (NIC, network, NIC)",
               "15us",
               "[CC-INTER][CC-ABOUT] ib_write_lat HBM to HBM across trn2.48xlarge: 15 us",
               {},
               0,
               1});
    r.declare({"cluster.link.energy_per_bit",
               ParamType::energy,
               "NeuronLink (and switch port) energy per bit per hop",
               "5pJ",
               "assumption: long-reach 100G-class SerDes, about 5 pJ/bit per hop",
               {},
               0,
               1e-9});
    r.declare({"cluster.efa.energy_per_bit",
               ParamType::energy,
               "inter-node energy per bit (NICs, network, optics)",
               "25pJ",
               "assumption: two NICs, switches and optical links",
               {},
               0,
               1e-9});
    r.declare({"cluster.memory_model",
               ParamType::choice,
               "memory model behind each chip's on-chip fabric during collectives: hbm (transaction level, rates "
               "measured on the chip's HBM model, chip.memory.hbm.*) or ideal (chip.memory.bandwidth and "
               "chip.memory.ideal.latency)",
               "hbm",
               "docs/adr/0008-transaction-level-hbm-for-collectives.md",
               {"hbm", "ideal"}});
    r.declare({"cluster.collective.auto.mesh_max",
               ParamType::bytes,
               "algorithm auto: mesh below this size",
               "1MB",
               "[CC-INTRA] mesh below 1 MB",
               {},
               0,
               1e15});
    r.declare({"cluster.collective.auto.rdh_max",
               ParamType::bytes,
               "algorithm auto: rdh up to this size (power-of-two ranks), the ring family above",
               "56MB",
               "[CC-INTRA] RDH for 1-56 MB",
               {},
               0,
               1e15});
}

ClusterSpec ClusterSpec::from_config(const Config& c) {
    ClusterSpec s;
    s.name = c.get_text("cluster.name");
    s.chip = c.get_text("cluster.chip");
    s.topology = parse_topology(c.get_text("cluster.topology"));
    s.nodes = static_cast<int>(c.get_int("cluster.nodes"));
    s.ranks_per_chip = static_cast<int>(c.get_int("cluster.ranks_per_chip"));
    s.cc_cores = static_cast<int>(c.get_int("chip.cc_cores"));
    s.link = {c.get_bandwidth("cluster.link.bandwidth"), c.get_duration("cluster.link.latency")};
    s.zlink = {c.get_bandwidth("cluster.zlink.bandwidth"), c.get_duration("cluster.zlink.latency")};
    s.packet = c.get_bytes("cluster.link.packet");
    // A DMA ring's turn moves at most one simulated packet (ChipEndpoint::next_turn), so a collective stream's
    // DMA packet can be no larger than one, or its share of the ring would be cut to it.
    for (const char* key : {"cluster.cc.packet", "cluster.cc.dp_packet"}) {
        if (c.get_bytes(key).count > s.packet.count) {
            throw UserError(
                fmt::format("{} = {}: larger than cluster.link.packet ({}); allowed: 64B up to "
                            "cluster.link.packet",
                            key, c.get_text(key), c.get_text("cluster.link.packet")));
        }
    }
    s.l1 = {0, c.get_bandwidth("cluster.switch.l1.port_bandwidth"), c.get_duration("cluster.switch.l1.latency")};
    s.l2 = {0, c.get_bandwidth("cluster.switch.l2.port_bandwidth"), c.get_duration("cluster.switch.l2.latency")};
    s.efa = {c.get_bandwidth("cluster.efa.bandwidth"), c.get_duration("cluster.efa.latency")};
    s.memory_model = c.get_text("cluster.memory_model");
    s.auto_mesh_max = c.get_bytes("cluster.collective.auto.mesh_max");
    s.auto_rdh_max = c.get_bytes("cluster.collective.auto.rdh_max");
    if (static_cast<long long>(s.chips()) * s.ranks_per_chip > 1 << 20) {
        throw UserError(
            fmt::format("cluster: {} nodes x {} chips x {} ranks per chip is too large; allowed at most "
                        "2^20 ranks (cluster.nodes, cluster.topology, cluster.ranks_per_chip)",
                        s.nodes, s.chips_per_node(), s.ranks_per_chip));
    }
    return s;
}

const ParamRegistry& cluster_param_registry() {
    static const ParamRegistry registry = [] {
        ParamRegistry r;
        declare_hw_params(r);
        ClusterSpec::declare(r);
        return r;
    }();
    return registry;
}

Config resolve_cluster_config(const std::string& cluster, const std::vector<std::string>& files,
                              const std::vector<std::string>& overrides) {
    const bool is_path = cluster.find('/') != std::string::npos || cluster.find(".yaml") != std::string::npos ||
                         cluster.find(".yml") != std::string::npos;
    if (!is_path && find_preset("clusters", cluster) == nullptr) {
        std::string allowed;
        for (const auto& n : preset_names("clusters")) allowed += (allowed.empty() ? "" : ", ") + n;
        throw UserError(fmt::format("--cluster '{}': unknown cluster preset; allowed: {} (or a path to a .yaml file)",
                                    cluster, allowed));
    }
    // The chip preset named by the cluster and the HBM part named by the chip are layers under the
    // cluster's: find them first, then resolve defaults -> part -> chip -> cluster -> files -> overrides.
    auto upper_layers = [&](Config& c) {
        apply_preset_or_file(c, "clusters", cluster);
        for (const auto& f : files) c.apply_yaml_file(f);
        for (const auto& o : overrides) c.apply_override(o);
    };
    Config probe(cluster_param_registry());
    probe.apply_defaults();
    upper_layers(probe);
    if (!probe.has("cluster.chip")) {
        throw UserError(
            fmt::format("cluster '{}': cluster.chip is not set; allowed: a chip preset ({}) or a chip "
                        "YAML file",
                        cluster, fmt::join(preset_names("chips"), ", ")));
    }
    const std::string chip = probe.get_text("cluster.chip");
    Config probe2(cluster_param_registry());
    probe2.apply_defaults();
    try {
        apply_preset_or_file(probe2, "chips", chip);
    } catch (const UserError& e) {
        throw UserError(
            fmt::format("cluster.chip = '{}' (from {}): {}", chip, probe.raw("cluster.chip").source, e.what()));
    }
    upper_layers(probe2);
    const std::string part = probe2.get_text("chip.memory.hbm.part");
    Config config(cluster_param_registry());
    config.apply_defaults();
    apply_preset_or_file(config, "memory", part);
    apply_preset_or_file(config, "chips", chip);
    upper_layers(config);
    std::string layers = "cluster '" + cluster + "' (chip '" + chip + "')";
    for (const auto& f : files) layers += " + " + f;
    config.check_complete(layers);
    return config;
}

}  // namespace trnsim::hw
