//! WASI stream writes whose bytes are checked before they are copied.
//!
//! wasmtime-wasi lifts a guest's `output-stream.write` or
//! `blocking-write-and-flush` argument into a host `Vec` whole, and only
//! then compares it with what the stream permits (or with 4096 bytes). A
//! guest writing its whole memory to stderr in one call would make the host
//! copy that much. These replace the two imports (in the linker, by name):
//! the length is checked first, in place, and only a permitted write is
//! copied and handed to wasmtime-wasi's own implementation unchanged.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, WasmList};
use wasmtime_wasi_io::bindings::wasi::io::streams::{self, Host, HostOutputStream};
use wasmtime_wasi_io::streams::{DynOutputStream, StreamError};

use super::FetchState;

/// The `wasi:io` version wasmtime-wasi registers (components built against
/// an older 0.2.x resolve to it by semver).
const STREAMS: &str = "wasi:io/streams@0.2.12";
/// What `blocking-write-and-flush` takes at most (the WASI spec's number).
const BLOCKING_MAX: usize = 4096;

type Cx<'a> = StoreContextMut<'a, FetchState>;
type Answer = wasmtime::Result<(Result<(), streams::StreamError>,)>;

fn answer(table: &mut wasmtime::component::ResourceTable, r: Result<(), StreamError>) -> Answer {
    Ok((match r {
        Ok(()) => Ok(()),
        Err(e) => Err(table.convert_stream_error(e)?),
    },))
}

/// Replaces the two imports; the linker must allow shadowing.
pub fn add(linker: &mut Linker<FetchState>) -> wasmtime::Result<()> {
    let mut s = linker.instance(STREAMS)?;
    s.func_wrap(
        "[method]output-stream.write",
        |mut store: Cx<'_>, (stream, data): (Resource<DynOutputStream>, WasmList<u8>)| {
            let table = &mut store.data_mut().table;
            let permit = match table.get_mut(&stream)?.check_write() {
                Ok(n) => n,
                Err(e) => return answer(table, Err(e)),
            };
            if data.len() > permit {
                // What wasmtime-wasi's stream does too, after copying.
                wasmtime::bail!("a write of {} bytes is more than check-write permitted ({permit})", data.len());
            }
            let bytes = data.as_le_slice(&store).to_vec();
            let table = &mut store.data_mut().table;
            let r = HostOutputStream::write(table, stream, bytes);
            answer(table, r)
        },
    )?;
    s.func_wrap_async(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Cx<'_>, (stream, data): (Resource<DynOutputStream>, WasmList<u8>)| {
            Box::new(async move {
                if data.len() > BLOCKING_MAX {
                    wasmtime::bail!("Buffer too large for blocking-write-and-flush (expected at most {BLOCKING_MAX})");
                }
                let bytes = data.as_le_slice(&store).to_vec();
                let table = &mut store.data_mut().table;
                let r = HostOutputStream::blocking_write_and_flush(table, stream, bytes).await;
                answer(table, r)
            })
        },
    )?;
    Ok(())
}
