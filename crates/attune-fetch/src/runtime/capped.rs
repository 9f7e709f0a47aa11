//! Strings and lists lifted out of a guest with a cap on what is copied.
//!
//! wasmtime lifts a `string` or `list` result into a host `String`/`Vec`
//! whole, so a fetcher returning a 60 MiB "summary" makes the host allocate
//! 60 MiB before any check could refuse it. [`Text`] and [`List`] lift the
//! same WIT types, but read the length first and copy nothing past their
//! cap: an over-long value arrives as its length only, and the answer is
//! refused naming the field ([`super::answers`]). They implement wasmtime's
//! `ComponentType`/`Lift` by hand, as its own `WasmStr` does.

use wasmtime::ValRaw;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};

/// A `string` of at most `MAX` bytes, or the length of a longer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text<const MAX: usize> {
    Ok(String),
    Over(usize),
}

/// A `list` of at most `MAX` elements, or the length of a longer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum List<T, const MAX: usize> {
    Ok(Vec<T>),
    Over(usize),
}

fn pointer_pair_flat(src: &[ValRaw; 2]) -> (usize, usize) {
    (src[0].get_u32() as usize, src[1].get_u32() as usize)
}

fn pointer_pair_memory(bytes: &[u8]) -> wasmtime::Result<(usize, usize)> {
    let word = |i: usize| -> wasmtime::Result<usize> {
        let b: [u8; 4] = bytes
            .get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| wasmtime::format_err!("pointer pair out of bounds"))?;
        Ok(u32::from_le_bytes(b) as usize)
    };
    Ok((word(0)?, word(4)?))
}

unsafe impl<const MAX: usize> ComponentType for Text<MAX> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WasmStr as ComponentType>::typecheck(ty, types)
    }
}

impl<const MAX: usize> Text<MAX> {
    fn lift(cx: &mut LiftContext<'_>, ptr: usize, len: usize) -> wasmtime::Result<Self> {
        // Only UTF-8 is read in place; a fetcher built with another string
        // encoding is refused rather than transcoded whole.
        if !matches!(cx.options().string_encoding, StringEncoding::Utf8) {
            wasmtime::bail!("strings must be UTF-8 encoded (the component uses another encoding)");
        }
        let memory = cx.memory();
        let end = ptr.checked_add(len).filter(|e| *e <= memory.len());
        let end = end.ok_or_else(|| wasmtime::format_err!("string pointer/length out of bounds of memory"))?;
        if len > MAX {
            return Ok(Text::Over(len));
        }
        Ok(Text::Ok(std::str::from_utf8(&memory[ptr..end])?.to_owned()))
    }
}

unsafe impl<const MAX: usize> Lift for Text<MAX> {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        debug_assert!(matches!(ty, InterfaceType::String));
        let (ptr, len) = pointer_pair_flat(src);
        Self::lift(cx, ptr, len)
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        debug_assert!(matches!(ty, InterfaceType::String));
        let (ptr, len) = pointer_pair_memory(bytes)?;
        Self::lift(cx, ptr, len)
    }
}

unsafe impl<T: ComponentType, const MAX: usize> ComponentType for List<T, MAX> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WasmList<T> as ComponentType>::typecheck(ty, types)
    }
}

impl<T: Lift, const MAX: usize> List<T, MAX> {
    fn lift(cx: &mut LiftContext<'_>, ty: InterfaceType, ptr: usize, len: usize) -> wasmtime::Result<Self> {
        let InterfaceType::List(i) = ty else { wasmtime::bail!("expected a list") };
        let elem = cx.types[i].element;
        let size = T::SIZE32;
        let memory = cx.memory();
        let bytes = len.checked_mul(size).and_then(|n| ptr.checked_add(n)).filter(|e| *e <= memory.len());
        bytes.ok_or_else(|| wasmtime::format_err!("list pointer/length out of bounds of memory"))?;
        if !ptr.is_multiple_of(T::ALIGN32 as usize) {
            wasmtime::bail!("list pointer is not aligned");
        }
        if len > MAX {
            return Ok(List::Over(len));
        }
        let mut out = Vec::with_capacity(len);
        for n in 0..len {
            let at = ptr + n * size;
            out.push(T::linear_lift_from_memory(cx, elem, &memory[at..at + size])?);
        }
        Ok(List::Ok(out))
    }
}

unsafe impl<T: Lift, const MAX: usize> Lift for List<T, MAX> {
    fn linear_lift_from_flat(cx: &mut LiftContext<'_>, ty: InterfaceType, src: &Self::Lower) -> wasmtime::Result<Self> {
        let (ptr, len) = pointer_pair_flat(src);
        Self::lift(cx, ty, ptr, len)
    }

    fn linear_lift_from_memory(cx: &mut LiftContext<'_>, ty: InterfaceType, bytes: &[u8]) -> wasmtime::Result<Self> {
        let (ptr, len) = pointer_pair_memory(bytes)?;
        Self::lift(cx, ty, ptr, len)
    }
}
