#pragma once
// A cluster: `nodes` copies of one NeuronLink domain (an instance or an UltraServer: chips wired by the
// topology `cluster.topology`), joined by the inter-node EFA network, every chip built from the chip
// preset `cluster.chip`. Every `cluster.*` key is declared here once (docs/hw/interconnect.md lists them).

#include <string>
#include <vector>

#include "trnsim/core/config.h"
#include "trnsim/hw/link.h"
#include "trnsim/hw/network_switch.h"

namespace trnsim::hw {

// `cluster.topology` parsed: "ring:16", "torus2d:4x4", "torus3d:4x4x4", "full:8", "switch:64",
// "switch2:16x4" (16 groups of 4 chips).
struct TopologyShape {
    std::string kind;
    std::vector<int> dims;
    std::string text;
    int chips() const;  // chips in one node
};

// Throws UserError naming cluster.topology, the text and the allowed forms.
TopologyShape parse_topology(const std::string& text);

struct ClusterSpec {
    std::string name;
    std::string chip;  // chip preset or file
    TopologyShape topology;
    int nodes = 1;
    int ranks_per_chip = 1;
    int cc_cores = 1;  // chip.cc_cores: CC-Cores per chip, one collective stream each
    LinkSpec link;     // chip-to-chip NeuronLink, one direction (also the chip's uplink to a switch)
    LinkSpec zlink;    // links of a 3D torus's third dimension (trn2-ultraserver: between instances)
    Bytes packet;      // unit of serialization and arbitration
    SwitchSpec l1;     // switch:N, and the first level of switch2 (ports filled in by the topology)
    SwitchSpec l2;     // second level of switch2
    LinkSpec efa;      // per-chip NIC bandwidth; latency chip to chip across nodes
    std::string memory_model;
    Bytes auto_mesh_max;  // `auto`: mesh below this size
    Bytes auto_rdh_max;   // `auto`: rdh up to this size, the ring family above

    int chips_per_node() const { return topology.chips(); }
    int chips() const { return nodes * chips_per_node(); }
    int ranks() const { return chips() * ranks_per_chip; }

    static void declare(ParamRegistry& registry);
    static ClusterSpec from_config(const Config& config);
};

// Every hardware parameter (declare_hw_params) plus the cluster's; built once.
const ParamRegistry& cluster_param_registry();

// Resolves a cluster config: defaults, the HBM part and the chip preset the cluster names (cluster.chip),
// then the cluster preset or file, then user files, then `--set` overrides.
Config resolve_cluster_config(const std::string& cluster, const std::vector<std::string>& files,
                              const std::vector<std::string>& overrides);

}  // namespace trnsim::hw
