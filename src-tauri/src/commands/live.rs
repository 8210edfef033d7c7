use std::sync::Arc;

use clawdesk_desk::session::{Answer, LiveSession, Mode, SessionPlaces, StartRequest};
use clawdesk_desk::settings::DeskSettings;
use tauri::{AppHandle, Emitter, Runtime, State};

use crate::AppState;
use crate::wire::WireError;

fn with_session<T>(
    state: &AppState,
    f: impl FnOnce(&LiveSession) -> Result<T, WireError>,
) -> Result<T, WireError> {
    let session = state.session.lock().map_err(WireError::internal)?;
    match session.as_ref() {
        Some(s) => f(s),
        None => Err(WireError::session("no session is running")),
    }
}

/// Starts a live session with the saved settings; its progress arrives as `desk` events.
#[tauri::command]
pub async fn agent_start<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    request: StartRequest,
) -> Result<(), WireError> {
    let mut session = state.session.lock().map_err(WireError::internal)?;
    if session.as_ref().is_some_and(|s| !s.is_finished()) {
        return Err(WireError::session(
            "a session is already running; stop it first",
        ));
    }
    let settings = DeskSettings::load(&state.config_dir)?;
    let places = SessionPlaces {
        data: state.data_dir.clone(),
        gym_tasks: state.gym_tasks,
    };
    let events = Arc::new(move |event| {
        let _ = app.emit("desk", event);
    });
    // An async command runs on Tauri's runtime, where the session's tasks are spawned.
    let started = LiveSession::start(state.store.clone(), places, settings, request, events)?;
    *session = Some(started);
    Ok(())
}

#[tauri::command(async)]
pub fn agent_pause(state: State<'_, AppState>) -> Result<(), WireError> {
    with_session(&state, |s| {
        s.pause();
        Ok(())
    })
}

#[tauri::command(async)]
pub fn agent_resume(state: State<'_, AppState>) -> Result<(), WireError> {
    with_session(&state, |s| {
        s.resume();
        Ok(())
    })
}

#[tauri::command(async)]
pub fn agent_stop(state: State<'_, AppState>) -> Result<(), WireError> {
    with_session(&state, |s| {
        s.stop();
        Ok(())
    })
}

#[tauri::command(async)]
pub fn agent_mode(state: State<'_, AppState>, mode: Mode) -> Result<(), WireError> {
    with_session(&state, |s| {
        s.set_mode(mode);
        Ok(())
    })
}

/// The person's answer to the action waiting in the approval card.
#[tauri::command(async)]
pub fn agent_answer(state: State<'_, AppState>, id: u64, answer: Answer) -> Result<(), WireError> {
    with_session(&state, |s| Ok(s.answer(id, answer)?))
}
