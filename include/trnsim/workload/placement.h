#pragma once
// Placement of the parallel coordinates (dp, pp, tp) on global ranks, and which ranks do identical work.
// A rank is one NeuronCore (one logical core under LNC); the runtime numbers ranks so that consecutive
// ranks share a chip or are neighbours (runtime::RankLayout). The default order puts TP innermost (a TP
// group on neighbouring cores / chips, where its per-layer collectives are cheapest), then PP, then DP
// (Megatron-LM's default rank order, Narayanan et al. 2021 Sec. 3.3). `order` overrides it, innermost first.

#include <array>
#include <string>
#include <vector>

#include "trnsim/workload/program.h"

namespace trnsim::workload {

struct RankCoord {
    int dp = 0;
    int pp = 0;
    int tp = 0;
};

class Placement {
public:
    // `order`: a permutation of tp, pp, dp, innermost first, optionally prefixed "order=" (e.g.
    // "order=tp,dp,pp"). Throws UserError naming the text and what is allowed.
    Placement(int tp, int pp, int dp, const std::string& order = "tp,pp,dp");

    int ranks() const { return m_tp * m_pp * m_dp; }
    int tp() const { return m_tp; }
    int pp() const { return m_pp; }
    int dp() const { return m_dp; }
    int rank(const RankCoord& c) const;
    RankCoord coord(int rank) const;
    std::string order() const;  // "tp,pp,dp"

    // Ranks of `group` that contain `rank`, ordered by the group's coordinate (tp: tp index 0..tp-1, ...).
    // embedding: the first and last stage of rank's (dp, tp) (one rank when pp == 1). world: all ranks.
    std::vector<int> group_of(CommGroup group, int rank) const;
    // Every group of that kind, each ordered as group_of, groups by their smallest rank.
    std::vector<std::vector<int>> groups(CommGroup group) const;

    // Chip and node of a rank when ranks are numbered chip after chip, node after node.
    static int chip_of(int rank, int ranks_per_chip) { return rank / ranks_per_chip; }
    static int node_of(int rank, int ranks_per_chip, int chips_per_node) {
        return rank / (ranks_per_chip * chips_per_node);
    }

private:
    int m_tp, m_pp, m_dp;
    std::array<int, 3> m_order;   // dimension ids (0 tp, 1 pp, 2 dp), innermost first
    std::array<int, 3> m_stride;  // stride of each dimension id
};

// Ranks doing identical work: one class per pipeline stage (its TP peers and all DP replicas run the same
// StageProgram on their own shards). A scheduler may simulate the representative and reuse its timing
// where the hardware positions are symmetric too (that is the runtime's call).
struct SymmetryClass {
    int stage = 0;
    int representative = 0;  // rank of (dp 0, stage, tp 0)
    std::vector<int> ranks;  // all ranks of the class, ascending
};
std::vector<SymmetryClass> symmetry_classes(const Placement& placement);

}  // namespace trnsim::workload
