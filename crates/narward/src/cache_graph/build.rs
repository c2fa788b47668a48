//! Index time: every narinfo record read once, with the unknown-means-keep rules applied
//! here and nowhere else, each path's row handed to a [`ColumnSink`] as it is made: the
//! in-memory [`Columns`], or the column files written as they are built
//! (`index::columns::ColumnFiles`). The builder holds only the hash lookup and the NAR key
//! map; each row's references are resolved to ids on their own ([`Graph::resolve_into`]).

use super::{Csr, Header, Heap, Parts, Status, compression_code, flag};
use crate::graph::{Graph, NONE, reverse_csr};
use crate::listing::Listing;
use crate::model::FetchedRecord;
use crate::plan::{
    Named, earlier_named, hidden_in_parsed, lenient_scan, narinfo_doubt, nars_in_url,
};
use anyhow::{Result, bail};
use narward_formats::keys::{self, ObjectKind};
use narward_formats::narinfo::NarInfo;
use narward_formats::store_path::StorePathHash;
use std::borrow::Cow;
use std::collections::HashMap;

/// A string heap being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapBuf {
    pub off: Vec<u64>,
    pub bytes: Vec<u8>,
}

impl Default for HeapBuf {
    fn default() -> Self {
        HeapBuf {
            off: vec![0],
            bytes: Vec::new(),
        }
    }
}

impl HeapBuf {
    fn push(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.off.push(self.bytes.len() as u64);
    }

    fn view(&self) -> Heap<'_> {
        Heap {
            off: &self.off,
            bytes: &self.bytes,
        }
    }
}

/// The columns in memory, as written to disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    pub header: Header,
    pub hash: Vec<[u8; 20]>,
    pub nar_hash: Vec<[u8; 32]>,
    pub file_hash: Vec<[u8; 32]>,
    pub nar_size: Vec<u64>,
    pub file_size: Vec<u64>,
    pub nar_object: Vec<u32>,
    pub status: Vec<u8>,
    pub flags: Vec<u8>,
    pub compression: Vec<u8>,
    pub name: HeapBuf,
    pub url: HeapBuf,
    pub deriver: HeapBuf,
    pub sigs: HeapBuf,
    pub why: HeapBuf,
    pub holes: HeapBuf,
    pub ca: HeapBuf,
    pub refs_off: Vec<u64>,
    pub refs: Vec<u32>,
    pub referrers_off: Vec<u64>,
    pub referrers: Vec<u32>,
    pub extra_off: Vec<u64>,
    pub extra: Vec<u32>,
}

/// One path as its narinfo tells it (fields the plan and the other commands read).
#[derive(Default)]
pub struct Row<'t> {
    pub status: u8,
    pub flags: u8,
    pub compression: u8,
    pub nar_hash: [u8; 32],
    pub file_hash: [u8; 32],
    pub nar_size: u64,
    pub file_size: u64,
    pub nar_object: u32,
    pub name: &'t str,
    pub url: &'t str,
    pub deriver: &'t str,
    pub ca: &'t str,
    pub sigs: String,
    pub why: String,
    /// Base names of references to no path of the cache, newline-separated.
    pub holes: String,
}

/// Where the builder's rows go, one path at a time in id order (no path skipped).
pub trait ColumnSink {
    /// Before the first row: how many paths will come.
    fn begin(&mut self, _paths: usize) {}

    /// The next path: its row, its references (ids, sorted, deduplicated) and its extra
    /// NARs (object indexes, in the order named).
    ///
    /// # Errors
    /// The sink's (I/O) errors.
    fn push(&mut self, row: &Row<'_>, refs: &[u32], extra_nars: &[u32]) -> Result<()>;

    /// After the last path: every path's hash, by id (the builder holds nothing else by
    /// then), and the header.
    ///
    /// # Errors
    /// The sink's (I/O) errors.
    fn finish(&mut self, hashes: Vec<StorePathHash>, header: Header) -> Result<()>;
}

impl ColumnSink for Columns {
    fn push(&mut self, r: &Row<'_>, refs: &[u32], extra_nars: &[u32]) -> Result<()> {
        self.status.push(r.status);
        self.flags.push(r.flags);
        self.compression.push(r.compression);
        self.nar_hash.push(r.nar_hash);
        self.file_hash.push(r.file_hash);
        self.nar_size.push(r.nar_size);
        self.file_size.push(r.file_size);
        self.nar_object.push(r.nar_object);
        self.name.push(r.name);
        self.url.push(r.url);
        self.deriver.push(r.deriver);
        self.sigs.push(&r.sigs);
        self.why.push(&r.why);
        self.holes.push(&r.holes);
        self.ca.push(r.ca);
        self.refs.extend_from_slice(refs);
        self.refs_off.push(self.refs.len() as u64);
        self.extra.extend_from_slice(extra_nars);
        self.extra_off.push(self.extra.len() as u64);
        Ok(())
    }

    fn finish(&mut self, hashes: Vec<StorePathHash>, header: Header) -> Result<()> {
        self.hash = hashes.iter().map(|h| h.0).collect();
        let (roff, rids) = reverse_csr(hashes.len(), &self.refs_off, &self.refs);
        self.referrers_off = roff;
        self.referrers = rids;
        self.header = header;
        Ok(())
    }
}

impl Columns {
    /// Read `narinfos` (called once with a sink taking every record, in key order) against
    /// the listing `objs`: one path per `<hash>.narinfo` object of the listing.
    ///
    /// # Errors
    /// The source's errors; records out of key order.
    pub fn build(
        objs: &Listing,
        narinfos: impl FnOnce(&mut dyn FnMut(&FetchedRecord) -> Result<()>) -> Result<()>,
    ) -> Result<Columns> {
        let mut b = ColumnsBuilder::new(objs);
        narinfos(&mut |rec: &FetchedRecord| b.record(rec))?;
        b.finish()
    }

    fn empty() -> Columns {
        Columns {
            refs_off: vec![0],
            extra_off: vec![0],
            ..Default::default()
        }
    }

    /// The columns as typed slices.
    pub fn parts(&self) -> Parts<'_> {
        Parts {
            header: self.header,
            hash: &self.hash,
            nar_hash: &self.nar_hash,
            file_hash: &self.file_hash,
            nar_size: &self.nar_size,
            file_size: &self.file_size,
            nar_object: &self.nar_object,
            status: &self.status,
            flags: &self.flags,
            compression: &self.compression,
            name: self.name.view(),
            url: self.url.view(),
            deriver: self.deriver.view(),
            sigs: self.sigs.view(),
            why: self.why.view(),
            holes: self.holes.view(),
            ca: self.ca.view(),
            refs: Csr {
                off: &self.refs_off,
                ids: &self.refs,
            },
            referrers: Csr {
                off: &self.referrers_off,
                ids: &self.referrers,
            },
            extra_nars: Csr {
                off: &self.extra_off,
                ids: &self.extra,
            },
        }
    }

    /// The bytes of each column file, by name (see [`super::FILES`]), borrowed.
    pub fn files(&self) -> Vec<(&'static str, Cow<'_, [u8]>)> {
        fn b<T: bytemuck::Pod>(v: &[T]) -> Cow<'_, [u8]> {
            Cow::Borrowed(bytemuck::cast_slice(v))
        }
        let mut out = vec![
            (super::HEADER_FILE, Cow::Owned(self.header.encode())),
            ("paths.hash", b(&self.hash)),
            ("paths.nar_hash", b(&self.nar_hash)),
            ("paths.file_hash", b(&self.file_hash)),
            ("paths.nar_size", b(&self.nar_size)),
            ("paths.file_size", b(&self.file_size)),
            ("paths.nar_object", b(&self.nar_object)),
            ("paths.status", b(&self.status)),
            ("paths.flags", b(&self.flags)),
            ("paths.compression", b(&self.compression)),
        ];
        for (name, h) in [
            ("name", &self.name),
            ("url", &self.url),
            ("deriver", &self.deriver),
            ("sigs", &self.sigs),
            ("why", &self.why),
            ("holes", &self.holes),
            ("ca", &self.ca),
        ] {
            out.push((heap_file(name, "off"), b(&h.off)));
            out.push((heap_file(name, "heap"), b(&h.bytes)));
        }
        out.extend([
            ("refs.off", b(&self.refs_off)),
            ("refs.ids", b(&self.refs)),
            ("referrers.off", b(&self.referrers_off)),
            ("referrers.ids", b(&self.referrers)),
            ("extra_nars.off", b(&self.extra_off)),
            ("extra_nars.ids", b(&self.extra)),
        ]);
        out
    }
}

fn heap_file(name: &str, part: &str) -> &'static str {
    super::FILES
        .iter()
        .map(|f| f.0)
        .find(|f| *f == format!("paths.{name}.{part}"))
        .unwrap_or("unknown")
}

/// [`Columns::build`] fed one record at a time, each row handed to the sink `S` as it is
/// made (`narward index` and the benchmark generator write the column files as they go).
pub struct ColumnsBuilder<'a, S: ColumnSink = Columns> {
    b: Builder<'a, S>,
    paths: usize,
    objects: usize,
}

/// What the builder needs of a listing, and all it holds of it: the narinfo hashes in key
/// order (path ids), the NAR objects by key (listing index: a narinfo's NAR is anywhere in
/// the listing), and the number of objects.
pub struct ListingKeys<'a> {
    pub hashes: Vec<StorePathHash>,
    pub nar_objects: NarObjects<'a>,
    pub objects: usize,
}

/// The listing index of each object under `nar/`, by key.
pub enum NarObjects<'a> {
    /// Found in the listing itself (binary search, no copy of the keys).
    Listing(&'a Listing),
    /// A map, for a writer that holds no [`Listing`] (the benchmark generator).
    Map(HashMap<&'a str, usize>),
}

impl NarObjects<'_> {
    fn get(&self, key: &str) -> Option<usize> {
        match self {
            NarObjects::Listing(l) => key.starts_with("nar/").then(|| l.find(key)).flatten(),
            NarObjects::Map(m) => m.get(key).copied(),
        }
    }
}

impl<'a> ListingKeys<'a> {
    /// The keys of `objs`: one path per `<hash>.narinfo` object.
    pub fn of(objs: &'a Listing) -> ListingKeys<'a> {
        ListingKeys {
            hashes: objs.iter().filter_map(|o| o.narinfo_hash()).collect(),
            nar_objects: NarObjects::Listing(objs),
            objects: objs.len(),
        }
    }
}

impl<'a> ColumnsBuilder<'a, Columns> {
    /// A builder of the in-memory [`Columns`] for the listing `objs`.
    pub fn new(objs: &'a Listing) -> ColumnsBuilder<'a, Columns> {
        Self::with_sink(objs, Columns::empty())
    }
}

impl<'a, S: ColumnSink> ColumnsBuilder<'a, S> {
    /// A builder for the listing `objs` (one path per `<hash>.narinfo` object) writing
    /// into `sink`.
    pub fn with_sink(objs: &'a Listing, sink: S) -> ColumnsBuilder<'a, S> {
        Self::over(ListingKeys::of(objs), sink)
    }

    /// A builder over a listing's keys (for a writer that holds no [`Listing`]) writing
    /// into `sink`.
    pub fn over(keys: ListingKeys<'a>, mut sink: S) -> ColumnsBuilder<'a, S> {
        let ListingKeys {
            hashes,
            nar_objects,
            objects,
        } = keys;
        let n = hashes.len();
        sink.begin(n);
        ColumnsBuilder {
            b: Builder {
                nar_objects,
                graph: Graph::nodes_only(hashes),
                sink,
                rows: 0,
                edges: 0,
                extra: 0,
                missing_refs: 0,
                unparseable: 0,
                ids: Vec::new(),
            },
            paths: n,
            objects,
        }
    }

    /// The next record, in key order (records of other kinds, or of narinfos the listing
    /// does not have, are ignored).
    ///
    /// # Errors
    /// A record out of key order; the sink's errors.
    pub fn record(&mut self, rec: &FetchedRecord) -> Result<()> {
        self.b.record(rec)
    }

    /// The next narinfo, a row of a previous generation taken over as it is: `ni` its
    /// fields as those columns print them (its references aside), `refs` the ids of its
    /// references in this listing (sorted), `holes` its holes as those columns hold them.
    /// The caller vouches that none of its holes is a path of this listing and that no
    /// name it prints holds the hash of one (`index::generation::TakeOver`): the row is
    /// then the one [`ColumnsBuilder::record`] makes of a text that parses as `ni` with
    /// its references.
    ///
    /// # Errors
    /// A narinfo out of key order; the sink's errors.
    pub fn same(
        &mut self,
        hash: &StorePathHash,
        ni: &NarInfo<'_>,
        refs: &[u32],
        holes: &str,
    ) -> Result<()> {
        self.b.same(hash, ni, refs, holes)
    }

    /// Narinfos so far that do not parse or could not be fetched.
    pub fn unparseable(&self) -> u64 {
        self.b.unparseable
    }

    /// The finished sink; listed paths without a record are unknown (not indexed).
    ///
    /// # Errors
    /// The sink's errors.
    pub fn finish(mut self) -> Result<S> {
        self.b.fill_to(self.paths)?;
        self.b.finish(self.objects)
    }
}

/// The state of [`Columns::build`] while the records stream by.
struct Builder<'a, S> {
    /// NAR objects by key: a narinfo's NAR is anywhere in the listing.
    nar_objects: NarObjects<'a>,
    /// The node lookup (no references: each row's are resolved on their own).
    graph: Graph,
    sink: S,
    /// Paths handed to the sink so far, and their references and extra NARs.
    rows: usize,
    edges: u64,
    extra: u64,
    /// References to no path of the cache.
    missing_refs: u64,
    unparseable: u64,
    /// The current row's reference ids.
    ids: Vec<u32>,
}

impl<S: ColumnSink> Builder<'_, S> {
    fn nar_index(&self, k: &str) -> Option<usize> {
        self.nar_objects.get(k)
    }

    fn is_path(&self, h: &StorePathHash) -> bool {
        self.graph.id(h).is_some()
    }

    /// Paths `len..id` have no record: listed but not in the index, so unknown.
    fn fill_to(&mut self, id: usize) -> Result<()> {
        while self.rows < id {
            let row = Row {
                status: Status::NotIndexed as u8,
                flags: flag::NAR_UNKNOWN,
                nar_object: NONE,
                why: "listed but not in the index".into(),
                ..Row::default()
            };
            self.push(&row, std::iter::empty(), Named::default())?;
        }
        Ok(())
    }

    /// Hand one path's row to the sink, with its references `refs` and what `also` names
    /// beyond them (`also.paths`: more references, `also.nars`: extra NARs).
    fn push(
        &mut self,
        r: &Row<'_>,
        refs: impl Iterator<Item = StorePathHash>,
        also: Named,
    ) -> Result<()> {
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        self.missing_refs += self.graph.resolve_into(refs.chain(also.paths), &mut ids);
        let nars: Vec<u32> = also.nars;
        self.sink.push(r, &ids, &nars)?;
        self.rows += 1;
        self.edges += ids.len() as u64;
        self.extra += nars.len() as u64;
        self.ids = ids;
        Ok(())
    }

    /// Whether the path with this hash is listed (else its narinfo is not part of this
    /// cache any more), having filled the rows before it.
    fn next_is(&mut self, hash: &StorePathHash) -> Result<bool> {
        let Some(id) = self.graph.id(hash) else {
            return Ok(false);
        };
        if (id as usize) < self.rows {
            bail!("index narinfos are not in key order at {hash}.narinfo");
        }
        self.fill_to(id as usize)?;
        Ok(true)
    }

    /// One narinfo record.
    fn record(&mut self, rec: &FetchedRecord) -> Result<()> {
        let ObjectKind::Narinfo(hash) = keys::classify(&rec.key) else {
            return Ok(());
        };
        if !self.next_is(&hash)? {
            return Ok(());
        }
        // What earlier versions of this narinfo named is kept too (narinfos are immutable).
        let also = earlier_named(rec, &|h| self.is_path(h), &|k| self.nar_index(k));
        match rec.parse() {
            Ok(ni) => self.parsed(&hash, &ni, also),
            Err(u) => self.unparsed(rec, u.reason, also),
        }
    }

    /// A row of a previous generation taken over as it is ([`ColumnsBuilder::same`]).
    fn same(
        &mut self,
        hash: &StorePathHash,
        ni: &NarInfo<'_>,
        refs: &[u32],
        holes: &str,
    ) -> Result<()> {
        if !self.next_is(hash)? {
            return Ok(());
        }
        let nar_i = self.nar_index(keys::nar_key_for_url(ni.url));
        let nars = match nar_i {
            Some(_) => Vec::new(),
            None => nars_in_url(ni.url, &|k| self.nar_index(k)),
        };
        let mut row = self.row(hash, ni, nar_i);
        holes.clone_into(&mut row.holes);
        self.missing_refs += holes.split('\n').filter(|s| !s.is_empty()).count() as u64;
        self.sink.push(&row, refs, &nars)?;
        self.rows += 1;
        self.edges += refs.len() as u64;
        self.extra += nars.len() as u64;
        Ok(())
    }

    /// A narinfo that parses (a doubtful one too: it is kept as unknown by the plan).
    fn parsed(&mut self, hash: &StorePathHash, ni: &NarInfo<'_>, mut also: Named) -> Result<()> {
        let nar_i = self.nar_index(keys::nar_key_for_url(ni.url));
        also.extend(hidden_in_parsed(ni, &|h| self.is_path(h), &|k| {
            self.nar_index(k)
        }));
        let mut row = self.row(hash, ni, nar_i);
        row.holes = self.holes(ni);
        self.push(&row, ni.references.iter().map(|r| r.hash), also)
    }

    /// The row of a narinfo that parses, whose NAR is object `nar_i` (its holes left out).
    fn row<'t>(&self, hash: &StorePathHash, ni: &NarInfo<'t>, nar_i: Option<usize>) -> Row<'t> {
        let doubt = narinfo_doubt(hash, ni);
        let mut flags = 0;
        for (set, f) in [
            (ni.ca.is_some(), flag::CA),
            (ni.file_size.is_some(), flag::FILE_SIZE),
            (ni.deriver.is_some(), flag::DERIVER),
            (ni.file_hash.is_some(), flag::FILE_HASH),
        ] {
            if set {
                flags |= f;
            }
        }
        Row {
            status: if doubt.is_some() {
                Status::Doubtful as u8
            } else {
                Status::Parsed as u8
            },
            flags,
            compression: compression_code(ni.compression),
            nar_hash: ni.nar_hash.0,
            file_hash: ni.file_hash.map_or([0; 32], |h| h.0),
            nar_size: ni.nar_size,
            file_size: ni.file_size.unwrap_or(0),
            nar_object: nar_i.map_or(NONE, |i| i as u32),
            // A StorePath that is not this narinfo's path names nothing of this path.
            name: if ni.store_path.hash == *hash {
                ni.store_path.name
            } else {
                ""
            },
            url: ni.url,
            deriver: ni.deriver.unwrap_or(""),
            ca: ni.ca.unwrap_or(""),
            sigs: ni.sigs.join("\n"),
            why: doubt.unwrap_or_default(),
            holes: String::new(),
        }
    }

    /// The base names of `ni`'s references that name no path of the cache.
    fn holes(&self, ni: &NarInfo<'_>) -> String {
        let mut s = String::new();
        for r in ni.references.iter().filter(|r| !self.is_path(&r.hash)) {
            if !s.is_empty() {
                s.push('\n');
            }
            r.push_base_name(&mut s);
        }
        s
    }

    /// A narinfo that does not parse or was not fetched: what its text names is kept.
    fn unparsed(&mut self, rec: &FetchedRecord, why: String, mut also: Named) -> Result<()> {
        self.unparseable += 1;
        let found = lenient_scan(&rec.text, &|h| self.is_path(h), &|k| self.nar_index(k));
        // No listed NAR found: it might be any orphan.
        let flags = if found.nars.is_empty() {
            flag::NAR_UNKNOWN
        } else {
            0
        };
        let nar_object = found.nars.first().copied().unwrap_or(NONE);
        also.extend(found);
        let status = if rec.fetch_error.is_some() {
            Status::FetchFailed
        } else {
            Status::Unparseable
        };
        let row = Row {
            status: status as u8,
            flags,
            nar_object,
            why,
            ..Row::default()
        };
        self.push(&row, std::iter::empty(), also)
    }

    fn finish(self, objects: usize) -> Result<S> {
        let Builder {
            nar_objects,
            graph,
            mut sink,
            edges,
            extra,
            missing_refs,
            unparseable,
            ids,
            ..
        } = self;
        // Let go of the lookups before the sink finishes (the referrer fill).
        drop((nar_objects, ids));
        let header = Header {
            paths: graph.len() as u64,
            edges,
            extra_nars: extra,
            objects: objects as u64,
            missing_refs,
            unparseable,
        };
        let (hashes, _, _) = graph.into_parts();
        sink.finish(hashes, header)?;
        Ok(sink)
    }
}
