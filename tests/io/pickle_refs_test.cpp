// The RefCOCO `refs(unc).p` / `refs(umd).p` files were written by Python 2 cPickle (protocol 0 by default, 2
// with `protocol=2`). These tests build such pickles byte by byte, the way cPickle lays them out (MARK + LIST/DICT
// + PUT, APPEND / SETITEM per item in protocol 0, APPENDS / SETITEMS batches, BINPUT / BINGET and SHORT_BINSTRING
// in protocol 2, `str` and `unicode` values) and read them with the data-only unpickler.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "m2sa/core/error.h"
#include "m2sa/io/pickle.h"
#include "py2_pickle_writer.h"

namespace m2sa {
namespace {

using namespace test::py2;

Py sentence(int64_t id, std::vector<std::string> tokens, Py raw, std::string sent) {
  PyList toks;
  for (auto& t : tokens) toks.push_back(S(t));
  return D({{"tokens", L(toks)}, {"raw", std::move(raw)}, {"sent_id", I(id)}, {"sent", S(std::move(sent))}});
}

// The real structure of one refs(unc).p entry.
Py refs_fixture(Py unicode_raw) {
  Py r0 = D({{"sent_ids", L({I(0), I(1)})},
             {"file_name", S("COCO_train2014_000000581857_16.jpg")},
             {"ann_id", I(1719310)},
             {"ref_id", I(0)},
             {"image_id", I(581857)},
             {"split", S("train")},
             {"sentences", L({sentence(0, {"the", "lady", "with", "the", "blue", "shirt"}, S("THE LADY WITH THE BLUE SHIRT"),
                                       "the lady with the blue shirt"),
                              sentence(1, {"lady", "w", "back", "to", "us"}, S("lady w back to us"), "lady w back to us")})},
             {"category_id", I(1)}});
  Py r1 = D({{"sent_ids", L({I(2)})},
             {"file_name", S("COCO_train2014_000000581857_17.jpg")},
             {"ann_id", I(1384)},
             {"ref_id", I(1)},
             {"image_id", I(581857)},
             {"split", S("testA")},
             {"sentences", L({sentence(2, {"cafe", "man"}, std::move(unicode_raw), "cafe man")})},
             {"category_id", I(1)}});
  return L({r0, r1});
}

void check_refs(const PyValue& refs, const std::string& expected_raw) {
  ASSERT_EQ(refs.kind(), PyValue::Kind::List);
  ASSERT_EQ(refs.items().size(), 2u);
  const PyValue& r0 = refs.items()[0];
  EXPECT_EQ(r0.at("ann_id").as_int(), 1719310);
  EXPECT_EQ(r0.at("image_id").as_int(), 581857);
  EXPECT_EQ(r0.at("ref_id").as_int(), 0);
  EXPECT_EQ(r0.at("category_id").as_int(), 1);
  EXPECT_EQ(r0.at("split").as_str(), "train");
  EXPECT_EQ(r0.at("file_name").as_str(), "COCO_train2014_000000581857_16.jpg");
  ASSERT_EQ(r0.at("sent_ids").items().size(), 2u);
  EXPECT_EQ(r0.at("sent_ids").items()[1].as_int(), 1);
  const auto& sents = r0.at("sentences").items();
  ASSERT_EQ(sents.size(), 2u);
  EXPECT_EQ(sents[0].at("sent").as_str(), "the lady with the blue shirt");
  EXPECT_EQ(sents[0].at("raw").as_str(), "THE LADY WITH THE BLUE SHIRT");
  EXPECT_EQ(sents[0].at("tokens").items().size(), 6u);
  EXPECT_EQ(sents[0].at("tokens").items()[5].as_str(), "shirt");
  EXPECT_EQ(sents[1].at("sent_id").as_int(), 1);
  const PyValue& r1 = refs.items()[1];
  EXPECT_EQ(r1.at("split").as_str(), "testA");
  EXPECT_EQ(r1.at("ann_id").as_int(), 1384);
  EXPECT_EQ(r1.at("sentences").items()[0].at("raw").as_str(), expected_raw);
}

TEST(PickleRefs, Protocol0AsPython2CPickle) {
  // raw-unicode-escape: latin-1 bytes stay raw (0xE9 = e-acute), \u2019 and a surrogate pair are escapes.
  std::string raw = std::string("caf\xe9 man\\u2019s \\ud83d\\ude00");
  std::string bytes = Py2Pickler(0).dumps(refs_fixture(Py{Unicode{raw}}));
  EXPECT_EQ(bytes.substr(0, 16), "(lp1\n(dp2\nS'sent");  // the cPickle protocol 0 layout
  PyValue refs = unpickle(bytes, PickleHooks{}, "refs(unc).p");
  check_refs(refs, "caf\xc3\xa9 man\xe2\x80\x99s \xf0\x9f\x98\x80");
}

TEST(PickleRefs, Protocol2AsPython2CPickle) {
  std::string bytes = Py2Pickler(2).dumps(refs_fixture(Py{Unicode{"caf\xc3\xa9 man"}}));
  EXPECT_EQ(bytes.substr(0, 6), std::string("\x80\x02]q\x01(", 6));
  PyValue refs = unpickle(bytes, PickleHooks{}, "refs(umd).p");
  check_refs(refs, "caf\xc3\xa9 man");
}

TEST(PickleRefs, LiteralProtocol0Bytes) {
  // cPickle.dumps([{'split': 'val', 'ann_id': 5L, 'ok': True, 'raw': "it's"}]) with Python 2 longs and bools.
  const std::string bytes =
      "(lp1\n(dp2\nS'split'\np3\nS'val'\np4\nsS'ann_id'\np5\nL5L\nsS'ok'\np6\nI01\nsS'raw'\np7\nS\"it's\"\np8\nsa.";
  PyValue v = unpickle(bytes, PickleHooks{}, "refs(unc).p");
  const PyValue& d = v.items().at(0);
  EXPECT_EQ(d.at("split").as_str(), "val");
  EXPECT_EQ(d.at("ann_id").as_int(), 5);
  EXPECT_TRUE(d.at("ok").as_bool());
  EXPECT_EQ(d.at("raw").as_str(), "it's");
}

TEST(PickleRefs, BadEscapesAreErrorsNamingTheFile) {
  auto err = [](const std::string& bytes) {
    try {
      unpickle(bytes, PickleHooks{}, "refs(unc).p");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("Vab\\uzz12\np0\n.").find("refs(unc).p: pickle at byte 0: bad \\u escape"), std::string::npos);
  EXPECT_NE(err("S'a\\xg1'\np0\n.").find("bad \\x escape"), std::string::npos);
  EXPECT_NE(err("(lp1\ncposix\nsystem\n.").find("refusing to load global 'posix.system'"), std::string::npos);
}

}  // namespace
}  // namespace m2sa
