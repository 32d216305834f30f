#include "codec/safetensors.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/test_util.h"

namespace tpde {
namespace {

using test::MakeSafetensors;
using test::TestTensor;

std::string Header(const std::string& json, uint64_t declared_size = ~0ull) {
  std::string out;
  const uint64_t n = declared_size == ~0ull ? json.size() : declared_size;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  return out + json;
}

Status Parse(const std::string& file, SafetensorsHeader* h) { return ParseSafetensorsHeader(file, file.size(), h); }

TEST(Safetensors, ParsesEveryDtype) {
  const char* dtypes[] = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32",
                          "I16", "I8",  "U64", "U32", "U16", "U8",      "BOOL"};
  std::vector<TestTensor> tensors;
  for (const char* d : dtypes) {
    tensors.push_back({std::string("t_") + d, d, {3, 2}, std::string(6 * test::WidthOf(d), 'x')});
  }
  const std::string file = MakeSafetensors(tensors, R"({"format":"pt"})");
  SafetensorsHeader h;
  ASSERT_TRUE(Parse(file, &h).ok()) << Parse(file, &h).ToString();
  ASSERT_EQ(h.tensors.size(), std::size(dtypes));
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.data_start % 8, 0u);
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    EXPECT_EQ(DTypeName(h.tensors[i].dtype), dtypes[i]);
    EXPECT_EQ(h.tensors[i].num_elements(), 6u);
    EXPECT_EQ(h.tensors[i].shape, (std::vector<uint64_t>{3, 2}));
  }
}

TEST(Safetensors, SortsTensorsByOffsetAndAcceptsEmptyAndScalar) {
  const std::string json =
      R"({"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)"
      R"("c":{"dtype":"I16","shape":[2],"data_offsets":[4,8]}})";
  const std::string file = Header(json) + std::string(8, '\0');
  SafetensorsHeader h;
  ASSERT_TRUE(Parse(file, &h).ok()) << Parse(file, &h).ToString();
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "b");
  EXPECT_EQ(h.tensors[1].name, "a");
  EXPECT_EQ(h.tensors[2].name, "c");
}

TEST(Safetensors, AcceptsAHeaderWithNoTensors) {
  SafetensorsHeader h;
  EXPECT_TRUE(Parse(Header("{}      "), &h).ok());
  EXPECT_TRUE(h.tensors.empty());
}

struct BadCase {
  const char* what;
  std::string file;
  const char* expect_in_message;
};

TEST(Safetensors, RejectsMalformedFilesWithAClearError) {
  const std::string good_json = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string good = Header(good_json) + std::string(8, '\1');
  std::vector<BadCase> cases = {
      {"empty file", "", "shorter than"},
      {"truncated size", std::string("\x10\0\0", 3), "shorter than"},
      {"huge header length", Header("{}", 1ull << 40) + "xx", "exceeds the limit"},
      {"header past end", Header("{}", 64), "past the end"},
      {"truncated data", good.substr(0, good.size() - 1), "data buffer holds"},
      {"trailing bytes", good + "z", "data buffer holds"},
      {"bad json", Header(R"({"w":{"dtype":"F32",)") , "bad JSON"},
      {"not an object", Header("[1,2,3]  "), "does not start"},
      {"invalid utf8", Header("{\"\xff\xfe\":1}"), "bad JSON"},
      {"unknown dtype", Header(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})") + std::string(8, 0),
       "unknown dtype"},
      {"wrong byte count", Header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})") + std::string(8, 0),
       "needs 12"},
      {"negative shape", Header(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})") + std::string(8, 0),
       "shape"},
      {"overlapping offsets",
       Header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})") +
           std::string(6, 0),
       "overlap"},
      {"gap between tensors",
       Header(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})") +
           std::string(6, 0),
       "gap"},
      {"end before begin", Header(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})") + std::string(4, 0),
       "end before begin"},
      {"shape overflow",
       Header(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})") + std::string(8, 0),
       "overflows"},
      {"metadata not strings", Header(R"({"__metadata__":{"a":1}})"), "not a string"},
      {"unknown field", Header(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}})") + "a",
       "unknown field"},
      {"missing offsets", Header(R"({"w":{"dtype":"U8","shape":[1]}})") + "a", "data_offsets"},
  };
  for (const auto& c : cases) {
    SafetensorsHeader h;
    Status s = Parse(c.file, &h);
    EXPECT_TRUE(s.IsCorruption()) << c.what << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.expect_in_message), std::string::npos) << c.what << ": " << s.ToString();
  }
}

}  // namespace
}  // namespace tpde
