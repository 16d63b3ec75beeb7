//! The launcher's own window (FLTK, through fltk-rs: a small static toolkit, nothing to
//! install on the user's machine; docs/launcher.md says why this one): progress while the
//! broker prepares the service, the first-contact question with the broker's fingerprint
//! (Trust / Cancel), "connected" with *Disconnect*, and errors.
//!
//! FLTK runs on the main thread ([`Window::run`]); the launch runs on Tokio's threads and
//! talks to the window through [`WindowUi`], which sends requests over FLTK's channel
//! and awaits the user's answers on oneshot channels.

use std::sync::Arc;

use fltk::app;
use fltk::button::Button;
use fltk::enums::{Color, Font};
use fltk::misc::Progress;
use fltk::prelude::*;
use fltk::text::{TextBuffer, TextDisplay, WrapMode};
use tokio::sync::{Notify, oneshot};

use crate::script::HostFuture;
use crate::ui::{Ui, to_stderr};

/// The window's title in each state (the taskbar shows it; tests find the window by it).
pub mod title {
    /// Connecting, preparing, or showing a message.
    pub const WORKING: &str = "Portcullis";
    /// Asking whether to trust a new broker.
    pub const NEW_BROKER: &str = "Portcullis: new broker";
    /// The broker prepares the service.
    pub const PREPARING: &str = "Portcullis: preparing";
    /// Connected, with Disconnect.
    pub const CONNECTED: &str = "Portcullis: connected";
    /// An error.
    pub const ERROR: &str = "Portcullis: error";
}

/// What the launch asks of the window.
enum Request {
    Progress(String, u8),
    Message(String),
    Confirm(String, oneshot::Sender<bool>),
    Connected(String, oneshot::Sender<()>),
    Error(String),
    /// The launch is over: close, unless an error or a message is still to be read.
    Finished,
    /// A button was pressed, or the window closed (the title bar's close, Escape).
    Primary,
    Secondary,
    Close,
}

/// What the window shows now, and who waits for the user's answer.
enum State {
    Working,
    Confirming(oneshot::Sender<bool>),
    Connected(oneshot::Sender<()>),
    /// A message or an error is shown; closing the window ends nothing.
    Showing,
    Disconnecting,
}

/// The window on the main thread.
pub struct Window {
    app: app::App,
    receiver: app::Receiver<Request>,
    window: fltk::window::Window,
    text: TextBuffer,
    display: TextDisplay,
    progress: Progress,
    primary: Button,
    secondary: Button,
    closed_early: Arc<Notify>,
}

/// The launch's side of the window.
pub struct WindowUi {
    sender: app::Sender<Request>,
}

impl Window {
    /// Opens the window (hidden until the launch shows something); must be called on the
    /// main thread.
    pub fn open() -> (Self, WindowUi) {
        let app = app::App::default();
        let (sender, receiver) = app::channel::<Request>();
        let mut window = fltk::window::Window::default()
            .with_size(520, 290)
            .with_label(title::WORKING);
        let text = TextBuffer::default();
        let mut display = TextDisplay::new(15, 15, 490, 185, None);
        display.set_buffer(text.clone());
        display.wrap_mode(WrapMode::AtBounds, 0);
        display.set_text_font(Font::Helvetica);
        display.set_text_size(14);
        let mut progress = Progress::new(15, 210, 490, 22, None);
        progress.set_minimum(0.0);
        progress.set_maximum(100.0);
        progress.set_selection_color(Color::from_rgb(0x2f, 0x6f, 0xb0));
        let mut secondary = Button::new(285, 245, 105, 30, None);
        let mut primary = Button::new(400, 245, 105, 30, None);
        let to_window = sender.clone();
        primary.set_callback(move |_| to_window.send(Request::Primary));
        let to_window = sender.clone();
        secondary.set_callback(move |_| to_window.send(Request::Secondary));
        window.end();
        // The title bar's close button and Escape both end up here.
        let to_window = sender.clone();
        window.set_callback(move |_| to_window.send(Request::Close));
        let mut this = Self {
            app,
            receiver,
            window,
            text,
            display,
            progress,
            primary,
            secondary,
            closed_early: Arc::new(Notify::new()),
        };
        this.show(title::WORKING, "Connecting…", None, None, None);
        let ui = WindowUi { sender };
        (this, ui)
    }

    /// Resolves when the user closed the window before the connection was made: the
    /// launch stops.
    pub fn closed_early(&self) -> Arc<Notify> {
        Arc::clone(&self.closed_early)
    }

    /// Shows `text` under `title`, a progress bar at `percent` if given, and the buttons
    /// named.
    fn show(
        &mut self,
        title: &str,
        text: &str,
        percent: Option<u8>,
        primary: Option<&str>,
        secondary: Option<&str>,
    ) {
        self.window.set_label(title);
        self.text.set_text(text);
        self.display.redraw();
        match percent {
            Some(percent) => {
                self.progress.set_value(f64::from(percent.min(100)));
                self.progress.set_label(&format!("{} %", percent.min(100)));
                self.progress.show();
            }
            None => self.progress.hide(),
        }
        for (button, label) in [
            (&mut self.primary, primary),
            (&mut self.secondary, secondary),
        ] {
            match label {
                Some(label) => {
                    button.set_label(label);
                    button.activate();
                    button.show();
                }
                None => button.hide(),
            }
        }
        self.window.show();
        self.window.redraw();
    }

    /// Runs the window until the launch finished and the user has read what it shows.
    pub fn run(mut self) {
        let mut state = State::Working;
        let mut finished = false;
        while self.app.wait() {
            let Some(request) = self.receiver.recv() else {
                continue;
            };
            state = match (request, state) {
                (Request::Progress(label, percent), state) => {
                    self.show(title::PREPARING, &label, Some(percent), None, None);
                    state
                }
                (Request::Message(text), _) => {
                    self.show(title::WORKING, &text, None, None, None);
                    State::Showing
                }
                (Request::Confirm(question, answer), _) => {
                    self.show(
                        title::NEW_BROKER,
                        &question,
                        None,
                        Some("Trust"),
                        Some("Cancel"),
                    );
                    State::Confirming(answer)
                }
                (Request::Connected(text, disconnect), _) => {
                    self.show(title::CONNECTED, &text, None, Some("Disconnect"), None);
                    State::Connected(disconnect)
                }
                (Request::Error(text), _) => {
                    self.display
                        .set_text_color(Color::from_rgb(0x9b, 0x1c, 0x1c));
                    self.show(title::ERROR, &text, None, Some("Close"), None);
                    State::Showing
                }
                (Request::Finished, state) => {
                    finished = true;
                    match state {
                        State::Showing => {
                            self.primary.set_label("Close");
                            self.primary.show();
                            State::Showing
                        }
                        _ => break,
                    }
                }
                (Request::Primary | Request::Secondary | Request::Close, _) if finished => break,
                (Request::Primary, State::Confirming(answer)) => {
                    let _ = answer.send(true);
                    self.show(title::WORKING, "Trusted. Connecting…", None, None, None);
                    State::Working
                }
                (Request::Secondary | Request::Close, State::Confirming(answer)) => {
                    let _ = answer.send(false);
                    State::Working
                }
                (Request::Primary | Request::Close, State::Connected(disconnect)) => {
                    let _ = disconnect.send(());
                    self.show(title::WORKING, "Disconnecting…", None, None, None);
                    State::Disconnecting
                }
                (Request::Close, State::Working | State::Showing) => {
                    self.closed_early.notify_one();
                    self.show(title::WORKING, "Stopping…", None, None, None);
                    State::Disconnecting
                }
                (_, state) => state,
            };
        }
        self.window.hide();
    }
}

impl WindowUi {
    /// Tells the window that the launch is over.
    pub fn finished(&self) {
        self.sender.send(Request::Finished);
    }
}

impl Ui for WindowUi {
    fn progress(&self, label: &str, percent: u8) {
        tracing::info!(percent, "{label}");
        self.sender
            .send(Request::Progress(format!("{label}…"), percent));
    }

    fn progress_done(&self) {
        self.sender
            .send(Request::Progress("Starting the connection…".into(), 100));
    }

    fn message(&self, text: &str) {
        tracing::info!(message = text, "message to the user");
        to_stderr(text);
        self.sender.send(Request::Message(text.to_owned()));
    }

    fn error(&self, text: &str) {
        tracing::error!("{text}");
        to_stderr(&format!("portcullis-launcher: {text}"));
        self.sender.send(Request::Error(text.to_owned()));
    }

    fn confirm_new_broker(&self, host: &str, fingerprint: &str) -> HostFuture<bool> {
        let (answer, answered) = oneshot::channel();
        self.sender.send(Request::Confirm(
            format!(
                "The broker {host} is new to this launcher. Its key fingerprint is\n\n\
                 {fingerprint}\n\nCompare it with the one your administrator or the portal \
                 shows. Trust this broker?"
            ),
            answer,
        ));
        Box::pin(async move { answered.await.unwrap_or(false) })
    }

    fn connected(&self, service: &str) -> HostFuture<()> {
        self.wait_until_closed(&format!("Connected to {service}."))
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        to_stderr(text);
        let (disconnect, disconnected) = oneshot::channel();
        self.sender
            .send(Request::Connected(text.to_owned(), disconnect));
        Box::pin(async move {
            // The window is gone only when the launcher ends.
            let _ = disconnected.await;
        })
    }
}
