#pragma once
// Collective operations and the family of algorithms that decompose them into point-to-point transfers
// (docs/collectives.md). An algorithm sees the ranks' placement and the topology's published facts (a
// `RankLayout`), never hardware classes; it returns a `Schedule`: transfers with their sizes and the
// transfers each must wait for. The runner (collective_runner.h) executes schedules on the link models.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trnsim/core/numeric.h"

namespace trnsim::runtime {

enum class CollectiveOp { all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv };

const char* op_name(CollectiveOp op);  // "all-reduce", ...
bool parse_op(const std::string& text, CollectiveOp& out);
std::vector<std::string> op_names();
// nccom-test / NCCL bus-bandwidth factor: all-reduce 2(r-1)/r; all-gather, reduce-scatter, all-to-all
// (r-1)/r; broadcast and send-recv 1.
double busbw_factor(CollectiveOp op, int ranks);

// Where the participating ranks sit. Rank r is on chip `chip_of_rank[r]`; ranks are numbered along the
// cluster's ring order (each node's Hamiltonian order, node after node), so consecutive ranks are
// neighbours or on one chip.
struct RankLayout {
    int ranks = 0;
    int ranks_per_chip = 1;
    int channels = 1;  // collective streams per rank: the chip's CC-Cores over its ranks, at least 1
    int nodes = 1;
    int chips_per_node = 1;
    int total_ranks = 0;          // in the whole cluster
    std::string topology;         // cluster.topology text
    std::vector<int> torus_dims;  // of one node; empty unless ring / torus
    std::vector<int> chip_of_rank;
    std::vector<int> slot_of_rank;  // the rank's place among its chip's ranks (0 .. ranks_per_chip - 1)
    std::vector<int> node_of_rank;
    std::vector<int> position_in_node;             // rank's index among its node's participating ranks
    std::vector<std::vector<int>> coords_of_rank;  // its chip's torus coordinates within the node
};

struct CollectiveRequest {
    CollectiveOp op = CollectiveOp::all_reduce;
    std::uint64_t bytes = 0;          // N: the buffer per rank (all-gather: the gathered output); no schedule or
                                      // timing depends on the dtype (the DMA engines reduce bytes)
    int root = 0;                     // broadcast
    std::uint64_t auto_mesh_max = 0;  // algorithm `auto`: mesh below this
    std::uint64_t auto_rdh_max = 0;   // `auto`: rdh up to this, the ring family above
};

struct Transfer {
    int src = 0;  // rank
    int dst = 0;
    std::uint64_t bytes = 0;
    bool reduce = false;    // the receiver adds it into its data
    std::vector<int> deps;  // indices of transfers that must have arrived first
    // A join moves nothing and is done the moment its dependencies are: the end of a rank's step with several
    // arrivals, on which each of the rank's next transfers depends alone (a 256-rank mesh all-reduce then has
    // 3 x 65280 dependencies instead of 16.6 M).
    bool join = false;
    // The collective stream (CC-Core; NCCL's channel) that moves it at both ends, for the ring algorithms;
    // -1: none (the ranks' DMA rings take such transfers in turn).
    int channel = -1;
};

struct Schedule {
    std::string algorithm;  // the algorithm that built it (for `auto`, the one it chose)
    int steps = 0;
    std::vector<Transfer> transfers;
    // The collective stream that runs it, set by the caller: 0, or 1 for data-parallel traffic, which the
    // DMA engines serve in smaller packets (hw::EndpointSpec::cc_packet, [CC-OVERLAP]).
    int stream = 0;
    // The transfers that move data (not the joins).
    std::size_t messages() const;
};

class ICollectiveAlgorithm {
public:
    virtual ~ICollectiveAlgorithm() = default;
    virtual std::string name() const = 0;
    virtual std::string description() const = 0;
    // Throws UserError naming --algorithm, the reason and what is allowed when the op or the layout is
    // not supported (e.g. rdh on a non-power-of-two rank count).
    virtual Schedule build(const CollectiveRequest& request, const RankLayout& layout) const = 0;
};

void register_collective_algorithm(std::unique_ptr<ICollectiveAlgorithm> algorithm);
// The built-in algorithms are registered on first use. Throws UserError listing the names when unknown.
const ICollectiveAlgorithm& collective_algorithm(const std::string& name);
std::vector<std::string> collective_algorithm_names();

}  // namespace trnsim::runtime
