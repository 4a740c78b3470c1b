#include "trnsim/runtime/collective_runner.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>
#include <systemc>

#include "trnsim/core/error.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/cluster_spec.h"
#include "trnsim/hw/topology.h"
#include "trnsim/runtime/collective_engine.h"

namespace trnsim::runtime {

std::vector<std::uint64_t> sweep_sizes(std::uint64_t lo, std::uint64_t hi) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t s = lo; s <= hi && s != 0; s *= 2) {
        out.push_back(s);
        if (s > hi / 2) break;
    }
    return out;
}

namespace {

struct Prepared {
    CollectiveJob job;
    RankLayout layout;
    Schedule schedule;
};

}  // namespace

CollectiveRun run_collective_batches(const std::vector<std::vector<CollectiveJob>>& batches, const Config& config) {
    const hw::ClusterSpec spec = hw::ClusterSpec::from_config(config);
    (void)hw::ChipSpec::from_config(config);  // cross-key checks of the chip
    auto layout_topology = hw::make_topology(spec);
    // Ranks along the cluster's ring order: each node's Hamiltonian order, node after node.
    std::vector<int> rank_chip;
    const auto order = layout_topology->ring_order();
    for (int n = 0; n < spec.nodes; ++n)
        for (int local : order)
            for (int k = 0; k < spec.ranks_per_chip; ++k) rank_chip.push_back(n * spec.chips_per_node() + local);
    const int total = static_cast<int>(rank_chip.size());

    // Validate and schedule every job before anything is simulated.
    std::vector<std::vector<Prepared>> prepared;
    for (const auto& batch : batches) {
        prepared.emplace_back();
        for (const auto& job : batch) {
            if (job.bytes == 0) throw UserError("--bytes 0: allowed a positive size with its unit, e.g. 1KiB, 512MiB");
            const int ranks = job.ranks == 0 ? total : job.ranks;
            if (ranks < 2 || ranks > total) {
                throw UserError(fmt::format(
                    "--ranks {}: allowed 2..{} (cluster {}: {} node(s) x {} chips ({}) x {} rank(s) per chip)", ranks,
                    total, spec.name, spec.nodes, spec.chips_per_node(), spec.topology.text, spec.ranks_per_chip));
            }
            if (job.root < 0 || job.root >= ranks)
                throw UserError(fmt::format("--root {}: allowed 0..{}", job.root, ranks - 1));
            Prepared p;
            p.job = job;
            std::vector<int> group(static_cast<std::size_t>(ranks));
            for (int r = 0; r < ranks; ++r) group[static_cast<std::size_t>(r)] = r;
            p.layout = rank_layout(spec, *layout_topology, rank_chip, group);
            CollectiveRequest q;
            q.op = job.op;
            q.bytes = job.bytes;
            q.root = job.root;
            q.auto_mesh_max = spec.auto_mesh_max.count;
            q.auto_rdh_max = spec.auto_rdh_max.count;
            p.schedule = collective_algorithm(job.algorithm).build(q, p.layout);
            if (job.stream < 0 || job.stream > 1) throw UserError(fmt::format("stream {}: allowed 0, 1", job.stream));
            p.schedule.stream = job.stream;
            prepared.back().push_back(std::move(p));
        }
    }

    init_systemc();
    const auto wall_start = std::chrono::steady_clock::now();
    hw::Cluster cluster("cluster", spec, config);
    const auto& links = cluster.topology().links();

    CollectiveRun run;
    run.cluster = {spec.name,           spec.chip,         spec.topology.text,          spec.nodes,        spec.chips(),
                   spec.ranks_per_chip, spec.memory_model, cluster.memory(0).summary(), spec.packet.count, {}};
    for (const auto& l : links) run.cluster.link_names.push_back(l.name);

    CollectiveEngine engine(cluster);
    sc_core::sc_event batch_done;
    std::size_t jobs_left = 0;
    std::size_t batches_done = 0;

    sc_core::sc_spawn([&] {
        for (const auto& batch : prepared) {
            const std::uint64_t start = sc_core::sc_time_stamp().value();
            std::vector<std::uint64_t> bytes0, busy0;
            for (const auto& l : links) {
                bytes0.push_back(l.link->stats().bytes);
                busy0.push_back(l.link->stats().busy_fs);
            }
            std::vector<hw::ChipStats> chips0;
            for (int c = 0; c < cluster.chips(); ++c) chips0.push_back(cluster.chip_stats(c));
            std::uint64_t received0 = 0, reduced0 = 0;
            for (int c = 0; c < cluster.chips(); ++c) {
                received0 += cluster.endpoint(c).stats().bytes_received;
                reduced0 += cluster.endpoint(c).stats().bytes_reduced;
            }
            // Each batch starts from the same assignment state (DMA rings, reducing cores).
            engine.restart();
            std::vector<std::uint64_t> last_fs(batch.size(), 0);
            jobs_left = batch.size();
            for (std::size_t j = 0; j < batch.size(); ++j) {
                engine.start(batch[j].schedule, batch[j].layout, [&, j](std::uint64_t fs) {
                    last_fs[j] = fs;
                    if (--jobs_left == 0) batch_done.notify(sc_core::SC_ZERO_TIME);
                });
            }
            sc_core::wait(batch_done);
            const std::uint64_t end = sc_core::sc_time_stamp().value();

            BatchResult br;
            br.time_s = static_cast<double>(end - start) * 1e-15;
            for (std::size_t j = 0; j < batch.size(); ++j) {
                const Prepared& p = batch[j];
                JobResult jr;
                jr.job = p.job;
                jr.algorithm = p.schedule.algorithm;
                jr.ranks = p.layout.ranks;
                jr.steps = p.schedule.steps;
                jr.transfers = p.schedule.messages();
                for (const auto& t : p.schedule.transfers) jr.transfer_bytes += t.bytes;
                jr.time_s = static_cast<double>(last_fs[j] - start) * 1e-15;
                jr.algbw_gbps = static_cast<double>(p.job.bytes) / jr.time_s * 1e-9;
                jr.busbw_gbps = jr.algbw_gbps * busbw_factor(p.job.op, jr.ranks);
                br.jobs.push_back(jr);
            }
            LinkSummary& s = br.links;
            s.links = static_cast<int>(links.size());
            std::vector<LinkUse> uses;
            double util_sum = 0;
            for (std::size_t k = 0; k < links.size(); ++k) {
                const std::uint64_t b = links[k].link->stats().bytes - bytes0[k];
                const std::uint64_t busy = links[k].link->stats().busy_fs - busy0[k];
                br.link_bytes.push_back(b);
                if (b == 0) continue;
                const double u = end > start ? static_cast<double>(busy) / static_cast<double>(end - start) : 0.0;
                ++s.used;
                s.bytes += b;
                s.utilization_max = std::max(s.utilization_max, u);
                util_sum += u;
                uses.push_back({links[k].name, b, u});
            }
            s.utilization_mean_used = s.used > 0 ? util_sum / s.used : 0.0;
            std::stable_sort(uses.begin(), uses.end(), [](const LinkUse& a, const LinkUse& b) {
                return a.bytes != b.bytes ? a.bytes > b.bytes : a.name < b.name;
            });
            if (uses.size() > 4) uses.resize(4);
            s.busiest = uses;
            ChipSummary& cs = br.chips;
            double memory_sum = 0, fabric_sum = 0;
            const double batch_fs = static_cast<double>(end - start);
            for (int c = 0; c < cluster.chips(); ++c) {
                const hw::ChipStats d = cluster.chip_stats(c) - chips0[static_cast<std::size_t>(c)];
                ChipUse u;
                u.chip = c;
                u.memory_bytes = d.memory.read_bytes + d.memory.write_bytes;
                if (u.memory_bytes == 0 && d.fabric.bytes == 0) continue;
                u.memory_busy_s = static_cast<double>(d.memory.busy_fs) * 1e-15;
                u.memory_utilization = batch_fs > 0 ? static_cast<double>(d.memory.busy_fs) / batch_fs : 0.0;
                u.fabric_bytes = d.fabric.bytes;
                u.fabric_busy_s = static_cast<double>(d.fabric.busy_fs) * 1e-15;
                u.fabric_utilization = batch_fs > 0 ? static_cast<double>(d.fabric.busy_fs) / batch_fs : 0.0;
                ++cs.used;
                cs.memory_bytes += u.memory_bytes;
                cs.fabric_bytes += u.fabric_bytes;
                cs.memory_utilization_max = std::max(cs.memory_utilization_max, u.memory_utilization);
                cs.fabric_utilization_max = std::max(cs.fabric_utilization_max, u.fabric_utilization);
                memory_sum += u.memory_utilization;
                fabric_sum += u.fabric_utilization;
                cs.per_chip.push_back(u);
            }
            cs.memory_utilization_mean_used = cs.used > 0 ? memory_sum / cs.used : 0.0;
            cs.fabric_utilization_mean_used = cs.used > 0 ? fabric_sum / cs.used : 0.0;
            for (int c = 0; c < cluster.chips(); ++c) {
                br.bytes_delivered += cluster.endpoint(c).stats().bytes_received;
                br.bytes_reduced += cluster.endpoint(c).stats().bytes_reduced;
            }
            br.bytes_delivered -= received0;
            br.bytes_reduced -= reduced0;
            run.batches.push_back(std::move(br));
            ++batches_done;
        }
    });

    run_simulation();
    run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    if (batches_done != prepared.size()) {
        throw std::logic_error(fmt::format("collective: {} of {} batches completed", batches_done, prepared.size()));
    }
    run.config = config.values();
    return run;
}

}  // namespace trnsim::runtime
