// Which kernel and tiling plan_kernel picks for M query rows per KV head on a (synthetic) sm_90
// device: the narrow Hopper kernel for M <= 16 (N = 16), the wide one above, the wide one
// for every M with FLASH_MLA_HOPPER_NARROW=0 or too little shared memory for the narrow one.
// Host logic only; no GPU is touched on the Hopper paths.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include <flash_mla/flash_mla.h>

#include "host/internal.h"
#include "kernels/sm90/config.h"

namespace flash_mla {
namespace {

// Sets (or unsets) an environment variable for one scope and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = std::string(old);
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

detail::DeviceInfo hopper_device() {
  detail::DeviceInfo d;
  d.device = 0;
  d.major = 9;
  d.num_sms = 132;
  d.smem_optin = 232448;
  d.hopper = true;
  return d;
}

detail::KernelPlan plan(const detail::DeviceInfo& dev, int rows, KernelChoice choice) {
  detail::KernelPlan p;
  const Status s = detail::plan_kernel(dev, rows, choice, &p);
  EXPECT_TRUE(s.ok()) << s.message();
  return p;
}

TEST(PlanKernel, NarrowHopperKernelUpTo16Rows) {
  const ScopedEnv narrow("FLASH_MLA_HOPPER_NARROW", nullptr);
  const detail::DeviceInfo dev = hopper_device();
  struct Expect { int rows, narrow_rows, block_m, m_blocks; };
  for (Expect e : {Expect{1, 16, 16, 1}, Expect{16, 16, 16, 1}, Expect{17, 0, 64, 1},
                   Expect{32, 0, 64, 1}, Expect{33, 0, 64, 1}, Expect{64, 0, 64, 1},
                   Expect{65, 0, 64, 2}, Expect{256, 0, 64, 4}}) {
    SCOPED_TRACE("rows " + std::to_string(e.rows));
    const detail::KernelPlan p = plan(dev, e.rows, KernelChoice::kHopper);
    EXPECT_TRUE(p.hopper);
    EXPECT_EQ(p.narrow_rows, e.narrow_rows);
    EXPECT_EQ(p.block_m, e.block_m);
    EXPECT_EQ(p.m_blocks, e.m_blocks);
    EXPECT_EQ(p.ctas_per_sm, 1);
  }
}

TEST(PlanKernel, AutoOnHopperTakesTheNarrowKernel) {
  const ScopedEnv kernel("FLASH_MLA_KERNEL", nullptr);
  const ScopedEnv narrow("FLASH_MLA_HOPPER_NARROW", nullptr);
  const detail::KernelPlan p = plan(hopper_device(), 16, KernelChoice::kAuto);
  EXPECT_TRUE(p.hopper);
  EXPECT_EQ(p.narrow_rows, 16);
}

TEST(PlanKernel, NarrowKernelCanBeTurnedOff) {
  const ScopedEnv narrow("FLASH_MLA_HOPPER_NARROW", "0");
  for (int rows : {1, 16, 32}) {
    const detail::KernelPlan p = plan(hopper_device(), rows, KernelChoice::kHopper);
    EXPECT_TRUE(p.hopper);
    EXPECT_EQ(p.narrow_rows, 0) << "rows " << rows;
    EXPECT_EQ(p.block_m, sm90::HopperConfig::kBlockM);
  }
}

TEST(PlanKernel, WideKernelWhereTheNarrowOneDoesNotFit) {
  const ScopedEnv narrow("FLASH_MLA_HOPPER_NARROW", nullptr);
  detail::DeviceInfo dev = hopper_device();
  dev.smem_optin = sm90::HopperConfig::kSmemBytes;  // enough for the wide kernel only
  static_assert(sm90::NarrowConfig<16>::kSmemBytes > sm90::HopperConfig::kSmemBytes);
  const detail::KernelPlan p = plan(dev, 16, KernelChoice::kHopper);
  EXPECT_TRUE(p.hopper);
  EXPECT_EQ(p.narrow_rows, 0);
}

TEST(PlanKernel, HopperRefusedWithoutItsCode) {
  detail::DeviceInfo dev = hopper_device();
  dev.hopper = false;
  detail::KernelPlan p;
  const Status s = detail::plan_kernel(dev, 16, KernelChoice::kHopper, &p);
  EXPECT_EQ(s.code(), StatusCode::kNotSupported);
}

}  // namespace
}  // namespace flash_mla
