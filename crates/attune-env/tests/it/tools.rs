//! Finding uv: `ATTUNE_UV`, the config, then `PATH`; a missing one says how to install it.

use attune_env::{ToolError, Uv};

use crate::support;

#[tokio::test]
async fn a_missing_uv_names_pip_install_uv() {
    let t = tempfile::tempdir().unwrap();
    let err = Uv::find(None, None, Some(t.path().as_os_str().to_owned())).await.unwrap_err();
    assert!(matches!(err, ToolError::UvMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("pip install uv"), "{err}");

    let err = Uv::find(Some(t.path().join("no-uv").into_os_string()), None, None).await.unwrap_err();
    assert!(err.to_string().contains("ATTUNE_UV=") && err.to_string().contains("no-uv"), "{err}");
    let err = Uv::find(None, Some(&t.path().join("nope")), None).await.unwrap_err();
    assert!(err.to_string().contains("`uv` in the config"), "{err}");
}

#[tokio::test]
async fn uv_is_found_by_override_before_path() {
    let Some(real) = support::uv().await else { return };
    let t = tempfile::tempdir().unwrap();
    // ATTUNE_UV wins over an empty PATH and over the config.
    let found =
        Uv::find(Some(real.program.clone().into_os_string()), Some(&t.path().join("nope")), None).await.unwrap();
    assert_eq!(found.program, real.program);
    assert!(found.version.starts_with("uv "), "{}", found.version);
    let found = Uv::find(None, Some(&real.program), None).await.unwrap();
    assert_eq!(found.program, real.program);
    let dir = real.program.parent().unwrap().as_os_str().to_owned();
    assert_eq!(Uv::find(Some("".into()), None, Some(dir)).await.unwrap().program, real.program);
}
