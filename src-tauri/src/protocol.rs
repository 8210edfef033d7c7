//! The `clawdesk:` scheme the window loads pictures from: stored screenshots by blob id
//! (`/blob/<id>`), their cached thumbnails (`/thumb/<id>`), and the live view's newest frame
//! (`/live/<seq>`). Files are read off the UI thread.

use std::borrow::Cow;

use clawdesk_store::BlobId;
use tauri::http::{Request, Response, StatusCode, header};
use tauri::{Manager, Runtime, UriSchemeContext, UriSchemeResponder};

use crate::AppState;

/// The thumbnails' width in pixels.
const THUMB_WIDTH: u32 = 192;

pub fn handle<R: Runtime>(
    ctx: UriSchemeContext<'_, R>,
    request: Request<Vec<u8>>,
    responder: UriSchemeResponder,
) {
    let app = ctx.app_handle().clone();
    let path = request.uri().path().to_owned();
    tauri::async_runtime::spawn_blocking(move || {
        let state = app.state::<AppState>();
        responder.respond(answer(&state, &path));
    });
}

fn answer(state: &AppState, path: &str) -> Response<Cow<'static, [u8]>> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let bytes = match kind {
        "blob" | "thumb" => match BlobId::try_from(name.to_owned()) {
            Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
            Ok(blob) if kind == "blob" => state.store.blob(&blob).map_err(|e| e.to_string()),
            Ok(blob) => clawdesk_desk::review::thumbnail(
                &state.store,
                &blob,
                &state.data_dir.join("thumbnails"),
                THUMB_WIDTH,
            )
            .map_err(|e| e.to_string())
            .and_then(|p| std::fs::read(p).map_err(|e| e.to_string())),
        },
        "live" => {
            let frame = state
                .session
                .lock()
                .ok()
                .and_then(|s| s.as_ref().and_then(|s| s.frame()));
            match frame {
                Some((_, png)) => Ok(png.as_ref().clone()),
                None => Err("no live frame yet".to_owned()),
            }
        }
        _ => return status(StatusCode::NOT_FOUND, "unknown path"),
    };
    match bytes {
        Ok(bytes) => Response::builder()
            .header(header::CONTENT_TYPE, "image/png")
            // Blobs are named by their content, so they never change.
            .header(header::CACHE_CONTROL, "max-age=31536000, immutable")
            .body(Cow::<'static, [u8]>::Owned(bytes))
            .unwrap_or_else(|_| Response::new(Cow::Borrowed(&[][..]))),
        Err(e) => status(StatusCode::NOT_FOUND, &e),
    }
}

fn status(code: StatusCode, message: &str) -> Response<Cow<'static, [u8]>> {
    let mut response = Response::new(Cow::Owned(message.as_bytes().to_vec()));
    *response.status_mut() = code;
    response
}
