#include <gtest/gtest.h>
#include <torch/torch.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Tests are small; one thread keeps them deterministic and leaves the other core to ctest -j.
  torch::set_num_threads(1);
  return RUN_ALL_TESTS();
}
