# A small OmenDB program in Mojo: create a store, put, get, search, reopen.
# Usage: mojo run -I bindings/mojo <link flags> bindings/mojo/example.mojo <empty-dir>
from std.sys import argv
from omendb import Store, Options, Stats, Hit, Cursor, version, METRIC_L2


def main() raises:
    var args = argv()
    var dir = String(args[1]) if len(args) > 1 else String("/tmp/omendb-mojo-example")
    var path = dir + "/example-store"
    print("omendb", version())
    var opts = Options()
    opts.create = True
    opts.dim = 4
    opts.metric = METRIC_L2
    var store = Store.open(path, opts)
    var ids: List[String] = ["apple", "banana", "cherry"]
    var vectors: List[Float32] = [
        1.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0,
    ]
    store.put(ids, vectors)  # vectors are read in place
    print("get banana:", store.get("banana")[1])
    var query: List[Float32] = [0.9, 0.1, 0.0, 0.0]
    var hits = store.search(query, 2)
    for i in range(len(hits)):
        print("hit", i, hits[i].id, hits[i].distance)
    var near = store.search_by_id("apple", 1, exclude_self=True)
    print("nearest to apple:", near[0].id)
    print("within 0.5 of the query:", store.range_search(query, 0.5, 10).total)
    var cursor = store.cursor()  # the entries as of now, page by page
    var page = List[Float32]()
    print("listed:", len(cursor.next(10, page)), "entries,", len(page), "floats")
    print("checkpoint", store.checkpoint())
    store.close()
    var again = Store.open(path, Options())  # dim taken from the store
    print(again.stats())
    # `again` is closed by its destructor here.
