#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "trnsim/core/sim_context.h"

// libsystemc's main() calls sc_main(): run Catch from there.
extern "C" int sc_main(int argc, char** argv) {
    trnsim::init_systemc();
    return Catch::Session().run(argc, argv);
}
