#pragma once
// Runs collectives and point-to-point transfers on a built cluster, inside a simulation: any number at a
// time, started whenever a caller likes (the collective runner's batches, the training-step scheduler's
// ranks), sharing links, DMA rings and memories. Each collective is planned by an algorithm of the family
// (collective.h) over a group of ranks and executed as its transfers, each started when the transfers it
// depends on have arrived.
//
// Ranks are numbered along the cluster's ring order: each node's Hamiltonian order, node after node,
// `ranks_per_chip` consecutive ranks per chip; so consecutive ranks are neighbours or on one chip.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "trnsim/core/numeric.h"
#include "trnsim/hw/topology.h"
#include "trnsim/runtime/collective.h"

namespace trnsim::runtime {

class CollectiveEngine {
public:
    using Done = std::function<void(std::uint64_t fs)>;

    explicit CollectiveEngine(hw::Cluster& cluster);
    CollectiveEngine(const CollectiveEngine&) = delete;
    CollectiveEngine& operator=(const CollectiveEngine&) = delete;

    int ranks() const { return static_cast<int>(m_rank_chip.size()); }
    int chip_of_rank(int rank) const { return m_rank_chip.at(static_cast<std::size_t>(rank)); }
    // The ranks 0 .. n-1 of the ring order (what `trnsim collective --ranks n` uses).
    std::vector<int> first_ranks(int n) const;
    // What an algorithm sees of a group (its members in the given order become ranks 0 .. size-1).
    RankLayout layout(const std::vector<int>& group) const;

    // Starts `schedule` (planned over `layout`) at the current time; `on_done` when its last transfer has
    // arrived (reduced), with that time.
    void start(const Schedule& schedule, const RankLayout& layout, DType dtype, Done on_done);
    // A point-to-point transfer between two ranks at the current time.
    void send(int src_rank, int dst_rank, std::uint64_t bytes, Done on_done);
    // Message ids (which pick a DMA ring and the arbitration order) restart from 0, and so does every
    // endpoint's ring assignment: called between independent runs so a result does not depend on history.
    void restart();

    hw::Cluster& cluster() { return m_cluster; }

private:
    struct Job {
        const Schedule* schedule = nullptr;
        const RankLayout* layout = nullptr;
        std::size_t elem_bytes = 4;
        std::vector<hw::Message> messages;
        std::vector<int> waiting;                  // deps not yet arrived, per transfer
        std::vector<std::vector<int>> dependents;  // per transfer
        std::size_t done = 0;
        std::uint64_t last_fs = 0;
        Done on_done;
    };
    void submit(Job* job, std::size_t i);

    hw::Cluster& m_cluster;
    std::vector<int> m_rank_chip;
    std::vector<std::unique_ptr<Job>> m_jobs;  // alive until the simulation ends (messages are referenced)
    std::deque<hw::Message> m_p2p;             // point-to-point messages, stable addresses
    std::uint64_t m_next_id = 0;
};

}  // namespace trnsim::runtime
