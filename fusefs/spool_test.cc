// Spool recovery: which version of each file survives a crash of the daemon,
// a reboot, and a clean stop (fusefs/spool.h).
#include "fusefs/spool.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace tpde {
namespace {

namespace fs = std::filesystem;

class SpoolTest : public ::testing::Test {
 protected:
  void Touch(const std::string& name, const std::string& bytes = "x") {
    test::WriteFile(dir_.path() / name, bytes);
  }
  bool Exists(const std::string& name) { return fs::exists(dir_.path() / name); }
  Spool::RecoveryReport Recover() {
    Spool spool;
    EXPECT_TRUE(Spool::Open(dir_.str(), &spool).ok());
    Spool::RecoveryReport r;
    Status s = spool.Recover(&r);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return r;
  }
  test::TempDir dir_;
};

TEST_F(SpoolTest, AfterADaemonCrashTheNewestSealedVersionIsIngestedAndDraftsGo) {
  Recover();  // records this boot
  Touch("7.1.sealed");
  Touch("7.1.synced", "");
  Touch("7.2.sealed");  // closed, never fsynced: the page cache kept it
  Touch("7.draft");     // a rewrite in progress
  Touch("8.new");       // created, never closed
  Touch("9.3.tmp");
  Spool::RecoveryReport r = Recover();
  ASSERT_EQ(r.versions.size(), 1u);
  EXPECT_EQ(r.versions[0].ino, 7u);
  EXPECT_EQ(r.versions[0].seq, 2u);
  EXPECT_FALSE(r.versions[0].synced);
  EXPECT_EQ(r.unfinished_new, std::vector<uint64_t>{8});
  EXPECT_TRUE(Exists("7.2.sealed"));
  for (const char* gone : {"7.1.sealed", "7.1.synced", "7.draft", "8.new", "9.3.tmp"}) EXPECT_FALSE(Exists(gone)) << gone;
}

TEST_F(SpoolTest, AfterARebootOnlyDurableVersionsAreTrusted) {
  Touch("boot_id", "a boot before this one\n");
  Touch("7.1.sealed");
  Touch("7.1.synced", "");
  Touch("7.2.sealed");  // may hold garbage after a power loss
  Touch("8.4.sealed");  // nothing durable: the file keeps its committed version
  Spool::RecoveryReport r = Recover();
  ASSERT_EQ(r.versions.size(), 1u);
  EXPECT_EQ(r.versions[0].ino, 7u);
  EXPECT_EQ(r.versions[0].seq, 1u);
  EXPECT_TRUE(r.versions[0].synced);
  EXPECT_EQ(r.log.size(), 2u);  // both dropped versions are logged
  EXPECT_FALSE(Exists("7.2.sealed"));
  EXPECT_FALSE(Exists("8.4.sealed"));
}

TEST_F(SpoolTest, AfterACleanStopEverySealedVersionIsTrustedEvenAcrossAReboot) {
  Touch("boot_id", "a boot before this one\n");
  Touch("clean_stop", "");
  Touch("7.2.sealed");
  Spool::RecoveryReport r = Recover();
  ASSERT_EQ(r.versions.size(), 1u);
  EXPECT_EQ(r.versions[0].seq, 2u);
  EXPECT_FALSE(Exists("clean_stop"));  // trusted once: the next run must stop cleanly again
}

TEST_F(SpoolTest, TheFormatBeforeSealedVersionsIsRecovered) {
  Touch("5.data", "closed");
  Touch("5.keep", "");
  Touch("6.data", "open, never closed");
  Spool::RecoveryReport r = Recover();
  ASSERT_EQ(r.versions.size(), 1u);
  EXPECT_EQ(r.versions[0].ino, 5u);
  EXPECT_EQ(r.versions[0].seq, 1u);
  EXPECT_TRUE(Exists("5.1.sealed"));
  EXPECT_EQ(r.unfinished_new, std::vector<uint64_t>{6});
  EXPECT_FALSE(Exists("6.data"));
}

}  // namespace
}  // namespace tpde
