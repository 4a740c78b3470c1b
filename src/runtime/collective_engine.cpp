#include "trnsim/runtime/collective_engine.h"

#include <stdexcept>

namespace trnsim::runtime {

CollectiveEngine::CollectiveEngine(hw::Cluster& cluster) : m_cluster(cluster) {
    const hw::ClusterSpec& spec = cluster.spec();
    const auto order = cluster.topology().ring_order();
    for (int n = 0; n < spec.nodes; ++n)
        for (int local : order)
            for (int k = 0; k < spec.ranks_per_chip; ++k) m_rank_chip.push_back(n * spec.chips_per_node() + local);
}

std::vector<int> CollectiveEngine::first_ranks(int n) const {
    std::vector<int> group;
    for (int r = 0; r < n; ++r) group.push_back(r);
    return group;
}

RankLayout CollectiveEngine::layout(const std::vector<int>& group) const {
    const hw::ClusterSpec& spec = m_cluster.spec();
    const hw::Topology& topo = m_cluster.topology();
    RankLayout l;
    l.ranks = static_cast<int>(group.size());
    l.ranks_per_chip = spec.ranks_per_chip;
    l.nodes = spec.nodes;
    l.chips_per_node = spec.chips_per_node();
    l.total_ranks = ranks();
    l.topology = spec.topology.text;
    l.torus_dims = topo.torus_dims();
    std::vector<int> per_node(static_cast<std::size_t>(spec.nodes), 0);
    for (const int rank : group) {
        const int chip = chip_of_rank(rank);
        const int node = chip / spec.chips_per_node();
        l.chip_of_rank.push_back(chip);
        l.node_of_rank.push_back(node);
        l.position_in_node.push_back(per_node[static_cast<std::size_t>(node)]++);
        l.coords_of_rank.push_back(topo.coords(chip % spec.chips_per_node()));
    }
    return l;
}

void CollectiveEngine::restart() {
    m_next_id = 0;
    for (int c = 0; c < m_cluster.chips(); ++c) m_cluster.endpoint(c).restart_assignment();
}

void CollectiveEngine::start(const Schedule& schedule, const RankLayout& layout, DType dtype, Done on_done) {
    auto job = std::make_unique<Job>();
    job->schedule = &schedule;
    job->layout = &layout;
    job->elem_bytes = dtype_bytes(dtype);
    job->on_done = std::move(on_done);
    const auto& tr = schedule.transfers;
    job->messages.resize(tr.size());
    job->waiting.resize(tr.size());
    job->dependents.resize(tr.size());
    for (std::size_t i = 0; i < tr.size(); ++i) {
        job->waiting[i] = static_cast<int>(tr[i].deps.size());
        for (int d : tr[i].deps) job->dependents[static_cast<std::size_t>(d)].push_back(static_cast<int>(i));
    }
    Job* j = job.get();
    m_jobs.push_back(std::move(job));
    if (tr.empty()) {
        if (j->on_done) j->on_done(sc_core::sc_time_stamp().value());
        return;
    }
    for (std::size_t i = 0; i < tr.size(); ++i)
        if (j->waiting[i] == 0) submit(j, i);
}

void CollectiveEngine::submit(Job* job, std::size_t i) {
    const Transfer& t = job->schedule->transfers[i];
    const RankLayout& l = *job->layout;
    hw::Message& m = job->messages[i];
    m.id = m_next_id++;
    m.src_chip = l.chip_of_rank[static_cast<std::size_t>(t.src)];
    m.dst_chip = l.chip_of_rank[static_cast<std::size_t>(t.dst)];
    m.bytes = t.bytes;
    m.reduce = t.reduce;
    m.elem_bytes = job->elem_bytes;
    m.route = &m_cluster.topology().route(m.src_chip, m.dst_chip);
    m.on_done = [this, job, i](std::uint64_t fs) {
        job->last_fs = std::max(job->last_fs, fs);
        for (int d : job->dependents[i])
            if (--job->waiting[static_cast<std::size_t>(d)] == 0) submit(job, static_cast<std::size_t>(d));
        if (++job->done == job->messages.size() && job->on_done) job->on_done(job->last_fs);
    };
    m_cluster.endpoint(m.src_chip).send(&m);
}

void CollectiveEngine::send(int src_rank, int dst_rank, std::uint64_t bytes, Done on_done) {
    hw::Message& m = m_p2p.emplace_back();
    m.id = m_next_id++;
    m.src_chip = chip_of_rank(src_rank);
    m.dst_chip = chip_of_rank(dst_rank);
    m.bytes = bytes;
    m.reduce = false;
    m.route = &m_cluster.topology().route(m.src_chip, m.dst_chip);
    m.on_done = std::move(on_done);
    m_cluster.endpoint(m.src_chip).send(&m);
}

}  // namespace trnsim::runtime
